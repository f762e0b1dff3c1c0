# near-failover: `make demo` runs the main job, `make test` the tests, on a fresh Debian machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the tests start for real: an OpenSSH server on loopback, etcd, Chromium
# (the status page, through Playwright), iproute2 (network namespaces for partitions), prometheus
# (its promtool checks and unit-tests deploy/prometheus/; its server is not left running), sudo
# (the least-privilege deployment, with deploy/sudoers/ and a throwaway user).
DEBIAN_PACKAGES := openssh-server openssh-client etcd-server chromium iproute2 prometheus sudo

.PHONY: install system-packages lint test test-long mainnet slow fuzz wake chaos demo bench screenshots clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

system-packages:
	scripts/ensure-debian-packages $(DEBIAN_PACKAGES)

# ruff (rules and line length in pyproject.toml), mypy on src/ (every function annotated), and the
# import contracts of pyproject.toml (DESIGN.md's layers, no loops); make test runs it first.
lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Two workers, one test file each at a time (a file's localnet fixtures stay in one worker):
# most tests wait on blocks of a localnet, so two run side by side on two cores.
test: install system-packages lint
	$(BIN)/pytest -q -n 2 --dist loadfile

# Minutes of repetitions under load (50 localnet starts on a busy machine, ...).
test-long: install system-packages
	$(BIN)/pytest -q -m long

# The status page of a leader and of a fenced member, at 1400x900, from the page's own test.
screenshots: install system-packages
	mkdir -p docs
	NEAR_FAILOVER_SCREENSHOTS=$(CURDIR)/docs $(BIN)/pytest -q tests/integration/test_status_page.py -k fenced

# The mainnet-profile moves with the profile's own figures (memtrie loads of 30 s per shard,
# 20 s store shutdowns, 0.6 s blocks): many minutes.
mainnet: install system-packages
	NEAR_FAILOVER_MAINNET_FULL=1 $(BIN)/pytest -q -m mainnet_profile tests/integration/test_mainnet_profile.py

# The issue scenarios with real neard timings and the default timeouts (minutes each), e.g.
# Option 1 through a 75 s memtrie load.
slow: install system-packages
	$(BIN)/pytest -q -m slow

# The fuzzing tests of every parser with a long random budget (make test runs a short fixed one).
FUZZ_EXAMPLES ?= 1000
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q --durations=0 tests/fuzz

demo: install
	$(BIN)/near-failover demo

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .import_linter_cache

# A paused leader host that wakes (issue 11): the wake-up test repeated 20 times on sqlite and
# on etcd, plus the measurement of the residual risk without a fence_command (README figures);
# about an hour on an idle machine.
wake: install system-packages
	rm -f wake-figures.jsonl
	NEAR_FAILOVER_WAKE_REPEAT=20 NEAR_FAILOVER_WAKE_FIGURES=wake-figures.jsonl $(BIN)/pytest -q -m wake tests/integration/test_wake.py
	$(BIN)/python -m tests.integration.test_wake wake-figures.jsonl

# Random fault schedules against the automatic mode (issue 15): the harness's own tests, then N
# schedules (or until DURATION seconds are used), each from its seed; every failing seed prints
# `make chaos SEED=...`, which replays that one schedule. FIRST= fixes the first seed (default:
# from the clock). Outcomes go to chaos-figures.jsonl (the README's figures).
N ?= 20
DURATION ?= 7200
SEED ?=
FIRST ?=
chaos: install system-packages
ifeq ($(SEED),)
	rm -f chaos-figures.jsonl
	$(BIN)/pytest -q -m chaos tests/chaos
	$(BIN)/python -m tests.chaos --n $(N) --duration $(DURATION) $(if $(FIRST),--first $(FIRST)) --figures chaos-figures.jsonl
else
	$(BIN)/python -m tests.chaos --seed $(SEED)
endif
