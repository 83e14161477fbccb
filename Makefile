# Two entry points a user needs: `make run` and `make test`.
PY ?= $(shell command -v python3.13 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/midge: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

.PHONY: run test bench clean
run: $(BIN)/midge
	$(BIN)/midge broker $(ARGS)

# The type checker over the sans-I/O core, then the whole suite under coverage (sys.monitoring:
# little overhead), then line coverage per module with a 90 % floor for the core packages.
test: $(BIN)/midge
	$(BIN)/python -m mypy
	rm -f .coverage .coverage.*
	COVERAGE_CORE=sysmon $(BIN)/python -m coverage run -m pytest -q $(PYTEST_ARGS)
	$(BIN)/python -m coverage combine -q
	$(BIN)/python tests/coverage_gate.py

bench: $(BIN)/midge
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info
