# near-failover: `make demo` runs the main job, `make test` the tests, on a fresh Debian machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the tests start for real: an OpenSSH server on loopback, etcd, Chromium
# (the status page, through Playwright), iproute2 (network namespaces for partitions).
DEBIAN_PACKAGES := openssh-server openssh-client etcd-server chromium iproute2

.PHONY: install system-packages test fuzz demo bench clean

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

# The fuzzing tests of every parser with a long random budget (make test runs a short fixed one).
FUZZ_EXAMPLES ?= 1000
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q --durations=0 tests/fuzz

demo: install
	$(BIN)/near-failover demo

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
