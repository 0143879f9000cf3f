# Every target sets up .venv itself: `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXTRAS ?= test,ibm,distributed,mitigation

.PHONY: venv test demo bench catalog clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q qepi tests
	$(PY) -m pytest -q --nbmake notebooks

demo: $(STAMP)
	$(VENV)/bin/qepi compare configs/demo.toml --seeds 3 --out runs/demo --overwrite

# The PennyLane baseline of `qepi bench aer` needs the pennylane-qiskit plugin, whose
# releases pin older Qiskit than qepi; it runs with ours when installed without its pins.
bench: $(STAMP)
	$(PY) -m pip install -q --no-deps pennylane-qiskit==0.45.0
	$(VENV)/bin/qepi bench exact
	$(VENV)/bin/qepi bench aer --json

catalog: $(STAMP)
	$(VENV)/bin/qepi circuits export circuits/

clean:
	rm -rf $(VENV) runs .pytest_cache
