"""The documentation stays true to the tree: every relative link in README.md and docs/*.md
leads to a file (and heading) that exists, and docs/configuration.md documents every setting of
config.toml.example and of the settings model, and nothing else.

Each check is also run on planted mistakes, so it is known to fail when it should.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import fedora_messaging.config
import pytest
from pydantic import BaseModel

from fedora_container_sync.config.settings import Settings
from support.docs import (
    anchors,
    broken_links,
    documented_keys,
    example_keys,
    github_slug,
    links,
    page_against_model,
    toml_keys,
    undocumented_settings,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.toml.example"
CONFIGURATION = ROOT / "docs" / "configuration.md"
SECTION = "consumer_config.container"
#: The section of docs/configuration.md for the keys fedora-messaging reads (its anchor).
BUS_SECTION = "the-fedora-messaging-part"


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# -- links ----------------------------------------------------------------------------------


def test_every_relative_link_in_the_docs_leads_somewhere():
    files = markdown_files()
    assert len(files) >= 9  # README and the pages of docs/
    assert broken_links(ROOT, files) == []


def test_the_readme_links_every_page_of_docs():
    linked = {target.split("#")[0] for _, target in links((ROOT / "README.md").read_text())}
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert pages - linked == set()


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Quick start", "quick-start"),
        ("`fedora-container-sync replay`", "fedora-container-sync-replay"),
        ("`[[consumer_config.container.registries]]`", "consumer_configcontainerregistries"),
        ("`--json`: the document for monitoring", "--json-the-document-for-monitoring"),
        ("Health: `/live` and `/ready`", "health-live-and-ready"),
        ("Fedora's broker", "fedoras-broker"),
        ("The manifest gate — policies, retirement", "the-manifest-gate--policies-retirement"),
        ("Release numbers: `[releases]`, else Bodhi", "release-numbers-releases-else-bodhi"),
        ("[A link](x.md) in *a* heading", "a-link-in-a-heading"),
    ],
)
def test_headings_get_githubs_anchors(heading, slug):
    assert anchors(f"# {heading}\n") == {slug}


def test_a_repeated_heading_gets_a_numbered_anchor():
    assert anchors("# Code\n\n## Code\n\n### Code\n") == {"code", "code-1", "code-2"}
    assert github_slug("Où ça?") == "où-ça"


GOOD_PAGE = """\
# Page

## Usage: `x --y`

```
# not a heading
[not a link](nowhere.md)
```

Inline code is no link: `[x](nowhere.md)`. Neither is an absolute URL:
[Fedora](https://fedoraproject.org/) <https://example.org/missing>, [mail](mailto:a@b.c).

[Here](#usage-x---y), [there](other.md#other-heading), [the dir](sub/), [a file](sub/f.txt),
[spaces](sub/with%20space.md#title), [reference][ref], ![image](sub/f.png), <img src="sub/f.png">

[ref]: other.md
"""


def _tree(tmp_path: Path, page: str) -> list[str]:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "other.md").write_text("# Other heading\n")
    (tmp_path / "docs" / "sub" / "f.txt").write_text("")
    (tmp_path / "docs" / "sub" / "f.png").write_bytes(b"")
    (tmp_path / "docs" / "sub" / "with space.md").write_text("# Title\n")
    (tmp_path / "outside.md").write_text("# Outside\n")
    (tmp_path / "docs" / "page.md").write_text(page)
    return broken_links(tmp_path / "docs", [tmp_path / "docs" / "page.md"])


def test_the_link_checker_passes_good_links_and_ignores_code(tmp_path):
    assert _tree(tmp_path, GOOD_PAGE) == []


@pytest.mark.parametrize(
    ("link", "problem"),
    [
        ("[a](missing.md)", "missing.md: no such file or directory"),
        ("[a](sub/missing.png)", "sub/missing.png: no such file or directory"),
        ("![a](sub/missing.png)", "sub/missing.png: no such file or directory"),
        ('<img src="sub/missing.png" alt="">', "sub/missing.png: no such file or directory"),
        ("[a][r]\n\n[r]: missing.md", "missing.md: no such file or directory"),
        ("[a](other.md#nothing)", "other.md#nothing: other.md has no heading with the anchor"),
        ("[a](#nothing)", "#nothing: page.md has no heading with the anchor #nothing"),
        ("[a](other.md#Other-Heading)", "other.md has no heading with the anchor #Other-Heading"),
        ("[a](sub/f.txt#L1)", "sub/f.txt#L1: an anchor into a file that is not Markdown"),
        ("[a](../outside.md)", "../outside.md: leads outside the repository"),
        ("[a](/docs/other.md)", "/docs/other.md: an absolute path; write it relative"),
        ("[a](ftp://example.org/x)", "ftp://example.org/x: not a relative link nor an http(s) URL"),
    ],
)
def test_the_link_checker_finds_a_planted_broken_link(tmp_path, link, problem):
    (found,) = _tree(tmp_path, f"# Page\n\nSee {link}\n")
    assert found.startswith("page.md:3: ")
    assert problem in found


# -- settings -------------------------------------------------------------------------------


def test_the_example_reader_reads_what_tomllib_reads():
    """The line reader finds every key tomllib finds in the uncommented file, and no other: so
    it understands the file's tables, and what it reads from comments is read the same way."""
    example = EXAMPLE.read_text()
    assert example_keys(example, commented=False) == toml_keys(example)
    # The commented keys are read too: some of each kind the example has.
    commented = example_keys(example) - toml_keys(example)
    assert {
        ("", "passive_declares"),  # "# key = value"
        ("bindings", "queue"),  # "# Fedora: key = value"
        ("tls", "ca_cert"),  # under a commented "# [table]"
        (f"{SECTION}.health", "stuck_after"),
        (f"{SECTION}.registries", "credential_prefix"),  # "# [[array]]"
        (f"{SECTION}.repos", "Silverblue"),
    } <= commented


def test_every_setting_of_the_example_is_documented():
    assert (
        undocumented_settings(EXAMPLE.read_text(), CONFIGURATION.read_text(), Settings, SECTION)
        == []
    )


def test_the_configuration_page_documents_the_settings_model_exactly():
    """Every key the page documents under [consumer_config.container] is a field of the
    settings model, in the right table, and every field is documented."""
    page = CONFIGURATION.read_text()
    assert page_against_model(page, Settings, SECTION) == []
    assert "max_parallel" in documented_keys(page)[SECTION]  # the page was read at all


def test_the_fedora_messaging_part_documents_the_examples_keys():
    """The top-level keys of the example are fedora-messaging's; each is documented in the
    page's fedora-messaging section, and that section names only keys fedora-messaging reads."""
    documented = documented_keys(CONFIGURATION.read_text())[BUS_SECTION]
    in_example = {(table or key).split(".")[0] for table, key in example_keys(EXAMPLE.read_text())}
    assert in_example - documented == set()
    assert documented - set(fedora_messaging.config.DEFAULTS) == set()


class Inner(BaseModel):
    depth: int = 1


class Model(BaseModel):
    name: str = ""
    entries: dict[str, str] = {}
    inner: Inner = Inner()
    items: list[Inner] = []
    maybe: Inner | None = None


PAGE = """\
# Configuration

## `[app]`

| key | meaning |
|---|---|
| `name` | a name |
| `entries` | a table of anything |
| `inner` | see below |
| `items` | see below |
| `maybe` | see below |

### `[app.inner]`

| key | meaning |
|---|---|
| `depth` | how deep |

### `[[app.items]]`

| key | meaning |
|---|---|
| `depth` | how deep |

### `[app.maybe]`

| key | meaning |
|---|---|
| `depth` | how deep |
"""

EXAMPLE_TEXT = """\
top = 1
[app]
name = "x"
# Fedora: name = "y"
# A comment about name = nothing, which is prose.
[app.entries]
anything = "goes"
# [app.inner]
# depth = 2
[[app.items]]
depth = 3
"""


def test_the_settings_checks_pass_a_page_that_matches():
    assert undocumented_settings(EXAMPLE_TEXT, PAGE, Model, "app") == []
    assert page_against_model(PAGE, Model, "app") == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        # The example names a setting the page leaves out (commented out, or not).
        (("| `depth` | how deep |\n\n### `[[app.items]]`", "\n### `[[app.items]]`"),
         "[app.inner] depth: not documented"),
        (("| `name` | a name |\n", ""), "[app] name: not documented"),
        # Documented in another table than its own.
        (("## `[app]`", "## `[other]`"), "[app] name: not documented"),
    ],
)  # fmt: skip
def test_an_undocumented_setting_of_the_example_is_found(change, problem):
    assert problem in undocumented_settings(EXAMPLE_TEXT, PAGE.replace(*change), Model, "app")


@pytest.mark.parametrize(
    ("example", "problem"),
    [
        ("[app]\n# nmae = 1\n", "[app] nmae: not a setting"),
        ("# [app.inner]\n# deep = 1\n", "[app.inner] deep: not a setting"),
        ("# [app.nothing]\n# x = 1\n", "[app.nothing] x: not a setting"),
    ],
)
def test_a_key_of_the_example_that_is_no_setting_is_found(example, problem):
    assert undocumented_settings(example, PAGE, Model, "app") == [problem]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("| `name` | a name |\n", "| `name` | a name |\n| `nmae` | typo |\n"),
         "[app] nmae: not a setting"),
        (("| `entries` | a table of anything |\n", ""), "[app] entries: not documented"),
        (("### `[app.maybe]`", "### `[app.perhaps]`"), "[app.perhaps]: no such table"),
        (("### `[app.maybe]`", "### `[app.perhaps]`"), "[app.maybe] depth: not documented"),
    ],
)  # fmt: skip
def test_the_page_is_checked_against_the_model(change, problem):
    problems = page_against_model(PAGE.replace(*change, 1), Model, "app")
    assert any(p.startswith(problem) for p in problems), problems


# -- the generated page ---------------------------------------------------------------------


def test_the_benchmark_page_is_what_bench_py_writes(monkeypatch):
    """docs/benchmarks.md is written by bench/bench.py: its fixed text (the opening, with its
    links, and the section headings) is the generator's, and the notes follow the marker."""
    spec = importlib.util.spec_from_file_location("bench", ROOT / "bench" / "bench.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench", bench)  # for its dataclasses
    monkeypatch.setattr(sys, "path", list(sys.path))  # it puts bench/ and tests/ on the path
    spec.loader.exec_module(bench)
    cpu = bench.Cpu(tools=1.0, registries=1.0, server=1.0)
    rounds = [
        bench.Round(
            seconds=dict.fromkeys("abcde", 1.0),
            cpu=dict.fromkeys("abcde", cpu),
            order="a, d, e, bc",
        )
    ]
    args = argparse.Namespace(repos=1, arches=1, size_mib=1, registries=1, rounds=1, big_mib=2)
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    written = bench.report(
        bench.Results(rounds),
        args,
        ("0", "0"),
        ["- (this machine)"],
        bench.kept_notes(ROOT / "docs" / "benchmarks.md"),
    )
    layered = bench.layered  # the bootable-container section, before the notes
    sample = layered.LayeredRound(seconds=dict.fromkeys("fgi", 1.0), least=1)
    shape = layered.Layers()
    written = layered.splice(
        written, layered.section(layered.LayeredResults(shape, 1, 1.0, [sample]))
    )

    def opening(text: str) -> str:
        return text.partition("\n## Machine\n")[0]

    def headings(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith("#")]

    assert opening(written) == opening(page)
    assert headings(written) == headings(page)
    assert written.endswith(page.partition(bench.NOTES_MARKER)[2])
