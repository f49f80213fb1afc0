# Quick start:  make demo   (publishes a sample compose to a throw-away local registry, then
#                            writes the audit's status page, .demo/status.html)
#               make test   (the whole test suite against real skopeo and registries)
#               make bench  (legacy vs cold publish vs replay vs two bare-tool floors, and how
#                            cost grows with image size and registries; writes
#                            docs/benchmarks.md; about 14 minutes on 2 cores, more with
#                            other jobs sharing them.
#                            BENCH_ARGS="--rounds 5" to change it, "--scale-rounds 0" to skip
#                            the scaling grid, "--only-layered" to run only the bootable-
#                            container and daemon-path scenarios; bench/bench.py --help lists
#                            the rest)
#               make deploy-check  (root: the systemd units in a booted systemd, the image with
#                            podman, the manifests with podman kube play; docs/running.md)
# All of them install what is missing: skopeo, the registry server, htpasswd, chromium and curl
# (apt-get or dnf), and a virtualenv with this package in $(VENV).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo screenshot test soak bench lint check deploy-check deploy-check-deps lock system-deps sigstore-tools venv clean

demo: system-deps venv
	$(BIN)/python demo/demo.py

# docs/audit-page.png, shown in README and docs/audit.md: the demo's status page in headless
# Chromium.
screenshot: system-deps venv
	$(BIN)/python demo/demo.py --screenshot docs/audit-page.png

# One pytest worker per CPU (pytest-xdist); the modules that talk to RabbitMQ share one worker
# (tests/conftest.py), as their consumers bind the same topics. PYTEST_ARGS="-n 0" runs it in
# one process.
PYTEST_ARGS ?= -n auto --dist loadgroup
test: system-deps venv sigstore-tools
	$(BIN)/pytest $(PYTEST_ARGS)

# Debian 13's skopeo and cosign for the signing tests (Debian 12's skopeo has sigstore patched
# out): fetched once from Debian's archive into .cache/debian13, nothing installed system-wide.
# Where the archive is unreachable the tests that need them skip (fail under CI=true).
sigstore-tools:
	@tests/tools/debian13-sigstore.sh || echo "warning: could not fetch Debian 13's skopeo and cosign; the signing tests will skip" >&2

# Three consumer replicas on a RabbitMQ node of its own, a stream of composes and faults, then
# the invariants (docs/running.md#the-soak-make-soak); a few minutes. Not part of `make test`:
# its file is not named test_*.py. Needs rabbitmq-server (.ci/run installs it).
soak: system-deps venv
	$(BIN)/pytest tests/soak/soak.py

bench: system-deps venv
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

check: lint test

# The production shape run for real: the systemd units in a booted systemd (systemd-nspawn of a
# Debian rootfs), the image built from deploy/openshift/Containerfile and run with podman, the
# manifests built, validated and played with `podman kube play` (deploy/check/deploy_check.py;
# docs/running.md). Root only; installs podman, buildah, mmdebstrap, systemd-container, runc
# where missing; caches the rootfs and the image layers under $(DEPLOY_CHECK_CACHE). On 2 cores
# about 4 minutes with that cache, 8-11 cold.
DEPLOY_CHECK_CACHE ?= /var/cache/fedora-container-sync-deploy-check
deploy-check: system-deps deploy-check-deps venv
	$(BIN)/python deploy/check/deploy_check.py --cache $(DEPLOY_CHECK_CACHE) $(DEPLOY_CHECK_ARGS)

deploy-check-deps:
	@if command -v podman >/dev/null && command -v buildah >/dev/null && command -v mmdebstrap >/dev/null && command -v systemd-nspawn >/dev/null && command -v newuidmap >/dev/null && command -v runc >/dev/null && command -v kubectl >/dev/null; then \
		exit 0; \
	elif command -v apt-get >/dev/null; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq podman buildah mmdebstrap systemd-container uidmap runc debian-archive-keyring; \
		command -v kubectl >/dev/null || DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq kubernetes-client; \
	else \
		echo "install podman, buildah, mmdebstrap, systemd-container (systemd-nspawn), uidmap and kubectl first" >&2; \
		exit 1; \
	fi

# requirements.lock: every runtime dependency pinned with its hashes, for every Python from
# 3.11 on (the image and the venv install route install exactly this, --require-hashes).
# setuptools is the build backend, installed from the lock too (pip --no-build-isolation).
lock: venv
	printf 'setuptools>=77\n' | $(BIN)/uv pip compile pyproject.toml - --generate-hashes --universal \
		--python-version 3.11 --custom-compile-command 'make lock' -o requirements.lock

# skopeo + a CNCF distribution registry server: Debian/Ubuntu `docker-registry`,
# Fedora `docker-distribution` (binary `registry`); htpasswd for the Basic-auth test registry;
# chromium (headless) for the test that loads the audit's status page in a real browser;
# curl for the benchmark's fetch floor.
system-deps:
	@if command -v skopeo >/dev/null && command -v htpasswd >/dev/null && command -v curl >/dev/null && { command -v docker-registry || command -v registry; } >/dev/null && { command -v chromium || command -v chromium-browser; } >/dev/null; then \
		exit 0; \
	elif command -v apt-get >/dev/null; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq skopeo docker-registry apache2-utils chromium curl; \
	elif command -v dnf >/dev/null; then \
		$(SUDO) dnf install -y skopeo docker-distribution httpd-tools chromium curl; \
	else \
		echo "install skopeo, a distribution registry server (docker-registry), htpasswd, chromium and curl first" >&2; \
		exit 1; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache src/*.egg-info
