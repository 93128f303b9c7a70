# The two set-up commands from the README:
#   make demo   create .venv, install motte, run a workload in an attested Keep
#   make test   install what the tests need (Python and Debian packages), run the suite
# Nothing here relies on what happens to be installed already.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench system-deps clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "motte needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || \
	  { sh scripts/system-deps.sh venv && rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

demo: $(STAMP)
	@sh scripts/demo.sh

system-deps:
	@sh scripts/system-deps.sh test

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

# MOTTE_REQUIRE_PEERS: a missing peer (upsd, the registry, Go, zig) fails the run instead of
# skipping the tests that need it. Two worker processes (pytest-xdist): the suite mostly waits
# on real servers and subprocesses; tests that share fixed ports run in one worker (loadgroup).
test: $(STAMP) system-deps
	$(BIN)/ruff check src tests bench examples
	MOTTE_REQUIRE_PEERS=1 $(BIN)/python -m pytest -q -n 2 --dist loadgroup

bench: $(STAMP) system-deps
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	@for b in bench/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build dist src/*.egg-info
