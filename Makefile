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

test: $(BIN)/midge
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(BIN)/midge
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info
