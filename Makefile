# The two README commands: `make demo` and `make test`. Both create or update the virtual
# environment themselves; `pip install` re-runs only when pyproject.toml changed. The demo
# installs only what routewatch runs on; the tests add the development tools and Chromium.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# Extra Debian packages the tests need (chromium for the dashboard browser tests);
# installed with apt-get when missing and we are root. Otherwise the command to run is
# printed and the tests that need them skip with a reason.
SYSTEM_PACKAGES ?= chromium
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: demo test lint bench clean distclean venv dev-venv system-packages

demo: venv
	$(BIN)/routewatch demo $(DEMO_ARGS)

test: dev-venv system-packages
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

lint: dev-venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Every benchmarks/NAME.py (not _helpers) as `python -m benchmarks.NAME`, with the services
# up (reused or private) and ROUTEWATCH_DATABASE_URL / ROUTEWATCH_MQTT_URL exported.
bench: dev-venv
	$(BIN)/python -m routewatch.services -- sh -c 'set -e; \
		for script in benchmarks/[!_]*.py; do \
			name=$$(basename "$$script" .py); echo "== benchmarks/$$name"; \
			$(BIN)/python -m "benchmarks.$$name"; \
		done'

venv: $(STAMP)
dev-venv: $(DEV_STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "routewatch needs Python >= 3.11 (set PYTHON=python3.X)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { \
		rm -rf $(VENV); \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv && \
			$(PYTHON) -m venv $(VENV); \
		else \
			echo "creating the venv failed; on Debian/Ubuntu run: sudo apt-get install -y python3-venv" >&2; \
			exit 1; \
		fi; }

# A dev install is also a runtime install: the demo does not re-install after the tests.
$(STAMP): pyproject.toml | $(BIN)/python
	@if [ -f $(DEV_STAMP) ] && [ $(DEV_STAMP) -nt pyproject.toml ]; then touch $@; \
	else $(BIN)/python -m pip install -e .; touch $@; fi

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@ $(STAMP)

system-packages:
	@missing=""; for pkg in $(SYSTEM_PACKAGES); do \
		dpkg -s "$$pkg" >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
		else \
			echo "missing system packages:$$missing (tests needing them will skip);" \
				"to run them: sudo apt-get install -y$$missing" >&2; \
		fi; \
	fi

clean:
	rm -rf .state .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
