# Two commands do all set-up on a fresh machine:
#   make demo   - virtual env, install, sample data, train, export, replay, print what was learned
#   make test   - virtual env, install, lint (ruff), run the default (fast) test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORK := work
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-slow system-deps venv clean lint

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all]'
	@touch $(STAMP)

venv: $(STAMP)

system-deps:
	@bash tools/install_system_deps.sh

demo: system-deps $(STAMP)
	$(VENV)/bin/firstwords demo --workdir $(WORK)

test: system-deps lint
	$(PY) -m pytest -q

test-slow: system-deps $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check edge export tools tests

clean:
	rm -rf $(WORK) .pytest_cache
