# Two commands: `make lab` opens the notebooks, `make test` runs every test (unit tests and notebooks).
# Both create the virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/*.py))

.PHONY: lab test unit notebooks lint bench clean gpu-check

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,ray]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
	touch $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

# Unit tests, then every notebook under strict nbval in the fast mode, in one pytest run.
test: $(STAMP)
	NAS_TUTORIAL_FAST=1 $(PY) -m pytest tests notebooks --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg -q

unit: $(STAMP)
	$(PY) -m pytest tests -q

# Re-execute the notebooks from their text form (fast mode: what nbval checks) and save outputs.
notebooks: $(STAMP)
	for nb in $(NOTEBOOKS); do \
	  NAS_TUTORIAL_FAST=1 $(PY) tools/execute_notebook.py $$nb || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check nas_tutorial tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_darts.py
	$(PY) benchmarks/bench_genetic_cnn.py
	$(PY) benchmarks/bench_enas.py
	$(PY) benchmarks/bench_fbnet.py
	$(PY) benchmarks/bench_pnas.py
	$(PY) benchmarks/bench_spos.py
	$(PY) benchmarks/bench_nao.py

clean:
	rm -rf $(VENV)

# On a machine with a CUDA GPU: every notebook in its default mode, then the benchmarks, into gpu_report/
# (REPORT.md, report.json, executed copies). One item: make gpu-check GPU_CHECK_ARGS="--only 02_darts".
# Uses .venv when it exists, else $(PYTHON) as it is (a GPU machine with nothing to install from).
gpu-check:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) tools/gpu_check.py $(GPU_CHECK_ARGS)
