# Quick start:  make demo   (publishes a sample compose to a throw-away local registry, then
#                            writes the audit's status page, .demo/status.html)
#               make test   (the whole test suite against real skopeo and registries)
#               make bench  (legacy vs cold publish vs replay vs two bare-tool floors, and how
#                            cost grows with image size and registries; writes
#                            docs/benchmarks.md; about 11 minutes on 2 cores, 18 with
#                            other jobs sharing them.
#                            BENCH_ARGS="--rounds 5" to change it, "--scale-rounds 0" to skip
#                            the scaling grid; bench/bench.py --help lists the rest)
# All three install what is missing: skopeo, the registry server, htpasswd, chromium and curl
# (apt-get or dnf), and a virtualenv with this package in $(VENV).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo screenshot test soak bench lint check system-deps venv clean

demo: system-deps venv
	$(BIN)/python demo/demo.py

# docs/audit-page.png, shown in README and docs/audit.md: the demo's status page in headless
# Chromium.
screenshot: system-deps venv
	$(BIN)/python demo/demo.py --screenshot docs/audit-page.png

test: system-deps venv
	$(BIN)/pytest

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
