# stainfree: `make demo` and `make test` each set up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_OUT ?= demo_output

.PHONY: install demo test test-gui lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if v.split('+')[0] == '2.13.0' else 'torch must stay at 2.13.0, found ' + v)"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/stainfree demo --out $(DEMO_OUT)

test: install
	$(PY) -m ruff check src tests benchmarks
	for b in benchmarks/[!_]*.py; do echo "== $$b --quick"; $(PY) $$b --quick || exit 1; done
	$(PY) -m pytest

# the napari plugin's GUI tests: installs the optional `napari` extra into .venv (make test then runs them too);
# the viewer canvas needs Xvfb and Qt's xcb libraries (README, "napari"), else those tests skip with the reason
test-gui: install
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,napari]'
	$(PY) -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.split('+')[0] == '2.13.0' else 'torch must stay at 2.13.0, found ' + v)"
	$(PY) -m pytest -rs tests/gui

lint: install
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks
	$(PY) -m mypy
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_layers.py

format: install
	$(PY) -m ruff format src tests benchmarks
	$(PY) -m ruff check --fix src tests benchmarks

bench: install
	for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
