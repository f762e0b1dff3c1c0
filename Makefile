# near-failover: `make demo` runs the main job, `make test` the tests, on a fresh Debian machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the tests start for real: an OpenSSH server on loopback, etcd, Chromium
# (the status page, through Playwright), iproute2 (network namespaces for partitions).
DEBIAN_PACKAGES := openssh-server openssh-client etcd-server chromium iproute2

.PHONY: install system-packages test demo bench clean wake

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

system-packages:
	scripts/ensure-debian-packages $(DEBIAN_PACKAGES)

test: install system-packages
	$(BIN)/pytest -q

demo: install
	$(BIN)/near-failover demo

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache

# A paused leader host that wakes (issue 11): the wake-up test repeated 20 times on sqlite and
# on etcd, plus the measurement of the residual risk without a fence_command (README figures);
# about an hour on an idle machine.
wake: install system-packages
	rm -f wake-figures.jsonl
	NEAR_FAILOVER_WAKE_REPEAT=20 NEAR_FAILOVER_WAKE_FIGURES=wake-figures.jsonl $(BIN)/pytest -q -m wake tests/integration/test_wake.py
	$(BIN)/python -m tests.integration.test_wake wake-figures.jsonl
