import os
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fedora_container_sync.config.load import (
    check_cert_dir,
    check_credentials,
    config_path,
    load_settings,
    registry_credentials,
)
from fedora_container_sync.config.settings import RegistrySettings
from fedora_container_sync.errors import ConfigError

GOOD = """
amqp_url = "amqp://localhost"

[consumer_config.container]
compose_url_allowlist = ["https://kojipkgs.fedoraproject.org/compose/"]
work_dir = "/srv/work"
publish_amqp_messages = true

[consumer_config.container.repos]
Container_Base = "fedora"
Container_Toolbox = "fedora-toolbox"

[consumer_config.container.releases]
latest = 41
rawhide = 43

[[consumer_config.container.registries]]
url = "registry.fedoraproject.org"
credential_prefix = "FEDORA_REGISTRY_"
cert_dir = "/etc/pki/registry"

[[consumer_config.container.registries]]
url = "quay.io/fedora"
credential_prefix = "QUAY_IO_"
"""


def write(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_fedora_deployment_shape_loads(tmp_path):
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.repos["Container_Toolbox"] == "fedora-toolbox"
    assert settings.gate_policy == "strict"
    assert settings.releases.latest == 41
    assert str(settings.work_dir) == "/srv/work"
    quay = settings.registries[1]
    assert (quay.host, quay.namespace) == ("quay.io", "fedora")
    assert quay.repository_path("fedora") == "fedora/fedora"
    assert settings.registries[0].repository_path("fedora") == "fedora"
    assert settings.registries[0].tls_verify is True


def test_credentials_come_from_the_environment_and_never_print():
    from fedora_container_sync.config.settings import RegistrySettings

    registry = RegistrySettings(url="quay.io/fedora", credential_prefix="QUAY_IO_")
    credentials = registry_credentials(
        registry, {"QUAY_IO_USER": "bot", "QUAY_IO_PASSWORD": "s3cret-pw"}
    )
    assert credentials is not None
    assert (credentials.username, credentials.password) == ("bot", "s3cret-pw")
    assert "s3cret-pw" not in repr(credentials)
    assert "s3cret-pw" not in str(credentials)


def test_missing_credentials_name_the_variables():
    from fedora_container_sync.config.settings import RegistrySettings

    registry = RegistrySettings(url="quay.io/fedora", credential_prefix="QUAY_IO_")
    with pytest.raises(ConfigError, match="QUAY_IO_PASSWORD is not set"):
        registry_credentials(registry, {"QUAY_IO_USER": "bot"})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("publish_amqp_messages = true", "publish_amqp_messages = true\ngate_polcy = 'strict'"),
            r"consumer_config\.container\.gate_polcy: unknown key",
        ),
        (
            ("publish_amqp_messages = true", "publish_amqp_messages = 'yes'"),
            r"consumer_config\.container\.publish_amqp_messages: Input should be a valid boolean",
        ),
        (("latest = 41", "latest = '41'"), r"consumer_config\.container\.releases\.latest"),
        (
            ("latest = 41", "latest = 41\nnewest = 42"),
            r"consumer_config\.container\.releases\.newest: unknown key",
        ),
        (
            ('url = "quay.io/fedora"', 'url = "https://quay.io/fedora"'),
            r"registries\.1\.url: must be host\[:port\]\[/namespace\], without a scheme",
        ),
        (
            ('credential_prefix = "QUAY_IO_"', 'credential_prefix = "QUAY_IO_"\npassword = "x"'),
            r"registries\.1\.password: unknown key",
        ),
        (
            ('Container_Base = "fedora"', 'Container_Base = "Fedora"'),
            r"repos.*not a valid repository name",
        ),
        (
            ('compose_url_allowlist = ["https://kojipkgs.fedoraproject.org/compose/"]', ""),
            r"compose_url_allowlist: required key is missing",
        ),
        (
            (
                'compose_url_allowlist = ["https://kojipkgs.fedoraproject.org/compose/"]',
                'compose_url_allowlist = ["ftp://x/"]',
            ),
            r"must be an http:// or https:// URL prefix",
        ),
        (("publish_amqp_messages = true", "gate_policy = 'hopeful'"), r"gate_policy"),
    ],
)
def test_invalid_settings_name_the_key(tmp_path, edit, message):
    old, new = edit
    assert old in GOOD
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(write(tmp_path, GOOD.replace(old, new, 1)))
    assert "\n" not in str(caught.value)


def test_missing_table(tmp_path):
    with pytest.raises(ConfigError, match=r"no \[consumer_config\.container\] table"):
        load_settings(write(tmp_path, 'amqp_url = "amqp://localhost"\n'))


def test_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(write(tmp_path, "[consumer_config\n"))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_config_path_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("FEDORA_MESSAGING_CONF", str(tmp_path / "env.toml"))
    assert config_path("explicit.toml").name == "explicit.toml"
    assert config_path(None) == tmp_path / "env.toml"
    monkeypatch.delenv("FEDORA_MESSAGING_CONF")
    assert str(config_path(None)) == "/etc/fedora-messaging/config.toml"


GATE = """
gate_policy = "carry-forward"

[consumer_config.container.expected_arches]
fedora = ["x86_64", "aarch64", "ppc64le", "s390x"]
fedora-toolbox = ["x86_64", "aarch64"]

[consumer_config.container.compose_rules]
release_shorts = ["Fedora"]
compose_types = ["production", "nightly"]
candidate_label = "^(Beta|RC)-"
candidates_move_version = false

[consumer_config.container.bodhi]
url = "http://127.0.0.1:9/"
cache_seconds = 60
"""


def with_gate(extra=GATE):
    head, sep, tail = GOOD.partition("\n[consumer_config.container.repos]")
    gate_line, _, tables = extra.strip().partition("\n\n")
    head = head.replace(
        "publish_amqp_messages = true", f"publish_amqp_messages = true\n{gate_line}"
    )
    return f"{head}\n{tables}\n{sep}{tail}"


def test_gate_settings_load(tmp_path):
    settings = load_settings(write(tmp_path, with_gate()))
    assert settings.gate_policy == "carry-forward"
    assert settings.expected_for("fedora-toolbox") == {"x86_64", "aarch64"}
    assert settings.expected_for("fedora-minimal") is None
    assert settings.compose_rules.release_shorts == ["Fedora"]
    assert settings.compose_rules.candidates_move_version is False
    assert settings.bodhi.url == "http://127.0.0.1:9"
    assert settings.bodhi.cache_seconds == 60


def test_gate_defaults(tmp_path):
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.expected_arches == {}
    assert settings.compose_rules.compose_types == ["production", "nightly"]
    assert settings.bodhi.url == "https://bodhi.fedoraproject.org"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('"x86_64", "aarch64"]', '"x86_64", "arm64"]'), r"expected_arches: .*'arm64' is not a"),
        (('"x86_64", "aarch64"]', "]"), r"fedora-toolbox: lists no arch"),
        (('"x86_64", "aarch64"]', '"x86_64", "x86_64"]'), r"lists an arch twice"),
        (("fedora-toolbox = [", "fedora-tolbox = ["), r"names 'fedora-tolbox', which no entry"),
        (('"carry-forward"', '"hybrid"'), r"gate_policy: Input should be 'strict' or"),
        (('"production", "nightly"]', '"production", "weekly"]'), r"compose_types\.1"),
        (('"^(Beta|RC)-"', '"^(Beta"'), r"candidate_label: not a regular expression"),
        (("cache_seconds = 60", "cache_seconds = 60\nretries = 1"), r"bodhi\.retries: unknown"),
        (('"http://127.0.0.1:9/"', '"bodhi.example"'), r"bodhi\.url: .* must be an http"),
        (("candidates_move_version", "candidates_move_latest"), r"candidates_move_latest: unknown"),
    ],
)
def test_invalid_gate_settings(tmp_path, edit, message):
    old, new = edit
    text = with_gate()
    assert old in text
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(write(tmp_path, text.replace(old, new, 1)))
    assert "\n" not in str(caught.value)


def test_credentials_from_systemd_credentials_directory(tmp_path):
    """LoadCredential=QUAY_IO_PASSWORD:... puts the secret in $CREDENTIALS_DIRECTORY."""
    from fedora_container_sync.config.settings import RegistrySettings

    (tmp_path / "QUAY_IO_PASSWORD").write_text("s3cret-pw\n")
    registry = RegistrySettings(url="quay.io/fedora", credential_prefix="QUAY_IO_")
    env = {"QUAY_IO_USER": "bot", "CREDENTIALS_DIRECTORY": str(tmp_path)}
    credentials = registry_credentials(registry, env)
    assert credentials is not None
    assert (credentials.username, credentials.password) == ("bot", "s3cret-pw")
    # The environment wins over a credential file of the same name.
    (tmp_path / "QUAY_IO_USER").write_text("file-bot")
    assert registry_credentials(registry, env).username == "bot"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"QUAY_IO_USER is not set in the environment or \$CRED"):
        registry_credentials(
            registry, {"QUAY_IO_PASSWORD": "pw", "CREDENTIALS_DIRECTORY": "/nowhere"}
        )


def test_unreadable_credential_file_is_named_not_shown(tmp_path):
    from fedora_container_sync.config.settings import RegistrySettings

    (tmp_path / "QUAY_IO_USER").mkdir()  # reading it fails
    registry = RegistrySettings(url="quay.io/fedora", credential_prefix="QUAY_IO_")
    with pytest.raises(
        ConfigError, match=f"credential file {re.escape(str(tmp_path))}/QUAY_IO_USER: "
    ):
        registry_credentials(registry, {"CREDENTIALS_DIRECTORY": str(tmp_path)})


def test_requeue_delays_default_and_validate(tmp_path):
    settings = load_settings(write(tmp_path, GOOD))
    assert (settings.requeue.initial_delay, settings.requeue.max_delay) == (30.0, 600.0)
    bad = GOOD + "\n[consumer_config.container.requeue]\ninitial_delay = -1\n"
    with pytest.raises(ConfigError, match=r"consumer_config\.container\.requeue\.initial_delay"):
        load_settings(write(tmp_path, bad))


def test_decompression_limits_default_and_validate(tmp_path):
    settings = load_settings(write(tmp_path, GOOD))
    assert (settings.max_decompressed_ratio, settings.max_decompressed_size) == (20.0, 32 << 30)
    given = GOOD.replace(
        "work_dir =",
        "max_decompressed_ratio = 8\nmax_decompressed_size = 4_294_967_296\nwork_dir =",
    )
    settings = load_settings(write(tmp_path, given))
    assert (settings.max_decompressed_ratio, settings.max_decompressed_size) == (8.0, 4 << 30)
    for bad in (
        "max_decompressed_ratio = 0.5",
        "max_decompressed_ratio = '20'",
        "max_decompressed_size = 0",
        "max_decompressed_size = 1.5e9",
    ):
        key = bad.split()[0]
        with pytest.raises(ConfigError, match=rf"consumer_config\.container\.{key}"):
            load_settings(write(tmp_path, GOOD.replace("work_dir =", f"{bad}\nwork_dir =")))


def test_network_limits_default_and_validate(tmp_path):
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.http_deadline == 300.0
    assert settings.max_metadata_bytes == 16 << 20
    assert settings.min_download_rate == 256 << 10
    limits = "http_deadline = 2.5\nmax_metadata_bytes = 4096\nmin_download_rate = 1000\n"
    tuned = load_settings(write(tmp_path, GOOD.replace("work_dir", limits + "work_dir", 1)))
    assert (tuned.http_deadline, tuned.max_metadata_bytes, tuned.min_download_rate) == (
        2.5,
        4096,
        1000,
    )
    for bad in (
        "http_deadline = 0",
        "max_metadata_bytes = -1",
        "min_download_rate = 0",
        'max_metadata_bytes = "16M"',
    ):
        key = bad.split(" ")[0]
        with pytest.raises(ConfigError, match=rf"container\.{key}: "):
            load_settings(write(tmp_path, GOOD.replace("work_dir", bad + "\nwork_dir", 1)))


@pytest.mark.parametrize(
    "prefix",
    [
        "https://kojipkgs.fedoraproject.org/compose/%2e%2e/",
        "https://kojipkgs.fedoraproject.org/compose/../",
        "https://kojipkgs.fedoraproject.org/compose;x/",
        "https://user@kojipkgs.fedoraproject.org/compose/",
        "https://kojipkgs.fedoraproject.org/compose/?x",
    ],
)
def test_allowlist_entries_are_judged_like_locations(tmp_path, prefix):
    text = GOOD.replace("https://kojipkgs.fedoraproject.org/compose/", prefix, 1)
    with pytest.raises(ConfigError, match=r"compose_url_allowlist: .https:"):
        load_settings(write(tmp_path, text))


# -- the whole file is checked: fedora-messaging's keys too ---------------------------------------

BUS_CONFIG = """
amqp_url = "amqps://fedora:@rabbitmq.fedoraproject.org/%2Fpubsub"
topic_prefix = "org.fedoraproject.prod"
callback = "fedora_container_sync.consumer:Consumer"
passive_declares = true

[tls]
ca_cert = "/etc/fedora-messaging/cacert.pem"
keyfile = "/etc/fedora-messaging/fedora-key.pem"
certfile = "/etc/fedora-messaging/fedora-cert.pem"

[client_properties]
app = "fedora-container-sync"

[qos]
prefetch_size = 0
prefetch_count = 1

[monitoring]
address = "127.0.0.1"
port = 8070

[queues."fedora-container-sync"]
durable = true
auto_delete = false
exclusive = false
arguments = {}

[[bindings]]
queue = "fedora-container-sync"
exchange = "amq.topic"
routing_keys = ["org.fedoraproject.prod.pungi.compose.status.change"]

[log_config]
version = 1
"""

#: table -> its keys, as fedora-messaging reads them
BUS_KEYS = {
    "": [
        "amqp_url",
        "topic_prefix",
        "callback",
        "passive_declares",
        "tls",
        "client_properties",
        "qos",
        "monitoring",
        "queues",
        "bindings",
        "log_config",
    ],
    "tls": ["ca_cert", "keyfile", "certfile"],
    "qos": ["prefetch_size", "prefetch_count"],
    "monitoring": ["address", "port"],
}
ALL_BUS_KEYS = {
    "amqp_url", "client_properties", "publish_exchange", "topic_prefix", "publish_priority",
    "passive_declares", "exchanges", "queues", "bindings", "qos", "callback", "monitoring",
    "consumer_config", "tls", "log_config", "ca_cert", "keyfile", "certfile", "prefetch_size",
    "prefetch_count", "address", "port",
}  # fmt: skip


#: A whole config as deployed: fedora-messaging's keys, then our table.
FULL = BUS_CONFIG + GOOD.replace('amqp_url = "amqp://localhost"', "")


def test_a_fedora_messaging_config_with_our_table_loads(tmp_path):
    assert load_settings(write(tmp_path, FULL)).publish_amqp_messages is True


def typo(key: str, edit: int, position: int, letter: str) -> str:
    """One letter dropped, doubled, swapped with the next or replaced."""
    i = position % len(key)
    if edit == 0:
        return key[:i] + key[i + 1 :]
    if edit == 1:
        return key[:i] + key[i] + key[i:]
    if edit == 2 and i + 1 < len(key):
        return key[:i] + key[i + 1] + key[i] + key[i + 2 :]
    return key[:i] + letter + key[i + 1 :]


@given(
    table=st.sampled_from(sorted(BUS_KEYS)),
    which=st.integers(min_value=0),
    edit=st.integers(min_value=0, max_value=3),
    position=st.integers(min_value=0),
    letter=st.sampled_from("abcdefghijklmnopqrstuvwxyz_"),
)
@settings(max_examples=150, deadline=None)
def test_a_misspelt_fedora_messaging_key_is_a_config_error_naming_it(
    tmp_path_factory, table, which, edit, position, letter
):
    keys = BUS_KEYS[table]
    key = keys[which % len(keys)]
    wrong = typo(key, edit, position, letter)
    assume(wrong not in ALL_BUS_KEYS and wrong)
    lines = BUS_CONFIG.splitlines()
    header = f"[{table}]" if table else None
    start = lines.index(header) + 1 if header else 0
    defines = re.compile(rf"{key}\s*=|\[{{1,2}}{key}[\].]")  # a key, table or array of tables
    index = next(i for i in range(start, len(lines)) if defines.match(lines[i]))
    lines[index] = lines[index].replace(key, wrong, 1)
    text = "\n".join(lines) + GOOD.replace('amqp_url = "amqp://localhost"', "")
    path = write(tmp_path_factory.mktemp("typo"), text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    line = str(caught.value)
    assert "\n" not in line
    assert wrong in line


def test_fedora_messagings_own_checks_run_too(tmp_path):
    text = FULL.replace('app = "fedora-container-sync"', 'app = "x"\nproduct = "mine"')
    with pytest.raises(ConfigError, match='"product" is a reserved keyword in client_properties'):
        load_settings(write(tmp_path, text))


# -- cert_dir: checked at start ---------------------------------------------------------------


def cert_dir_error(cert_dir) -> str:
    registry = RegistrySettings(url="registry.example.org", cert_dir=str(cert_dir))
    with pytest.raises(ConfigError) as caught:
        check_cert_dir(registry)
    line = str(caught.value)
    assert line.startswith(f"registry registry.example.org: cert_dir {cert_dir}: ")
    assert "\n" not in line
    return line


def test_a_missing_cert_dir_is_a_config_error(tmp_path):
    assert cert_dir_error(tmp_path / "nope").endswith(": not found")


def test_a_cert_dir_that_is_a_file_is_a_config_error(tmp_path):
    (tmp_path / "file").write_text("x")
    assert cert_dir_error(tmp_path / "file").endswith(": not a directory")


def test_a_cert_dir_with_an_unreadable_key_is_a_config_error(tmp_path):
    (tmp_path / "client.key").symlink_to(tmp_path / "gone.key")
    assert "client.key: unreadable: No such file or directory" in cert_dir_error(tmp_path)
    (tmp_path / "client.key").unlink()
    (tmp_path / "ca.crt").mkdir()
    assert "ca.crt: unreadable: Is a directory" in cert_dir_error(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory")
def test_an_unreadable_cert_dir_is_a_config_error(tmp_path):
    (tmp_path / "certs").mkdir(mode=0)
    assert cert_dir_error(tmp_path / "certs").endswith(": unreadable: Permission denied")


def test_a_cert_dir_with_garbage_for_a_ca_is_a_config_error(tmp_path):
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    assert "not usable certificates or keys" in cert_dir_error(tmp_path)


def test_check_credentials_checks_cert_dir(tmp_path):
    text = GOOD.replace('cert_dir = "/etc/pki/registry"', f'cert_dir = "{tmp_path / "nope"}"')
    settings = load_settings(write(tmp_path, text))
    env = {
        k: "x"
        for k in (
            "FEDORA_REGISTRY_USER",
            "FEDORA_REGISTRY_PASSWORD",
            "QUAY_IO_USER",
            "QUAY_IO_PASSWORD",
        )
    }
    with pytest.raises(ConfigError, match=r"cert_dir .*: not found"):
        check_credentials(settings, env)
    (tmp_path / "nope").mkdir()
    check_credentials(settings, env)
