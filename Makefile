# The two commands of the README:  `make demo`  and  `make test`.
# Each creates the virtual environment .venv on first use (only Python 3 and make are needed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TESTED := $(VENV)/.installed-test

.PHONY: demo test test-slow serve clean

# rnncap with its web page's extra: what `make demo` and `make serve` need (half the install
# time of the test extras, which bring a browser driver, ONNX Runtime, MPI and Dask).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[serve]'
	touch $@

$(TESTED): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(STAMP)
	$(BIN)/rnncap demo

# Two test processes, one BLAS thread each: on 2 cores this beats one process with two BLAS
# threads, and stays fast when the machine is shared (oversubscribed BLAS threads spin).
test: $(TESTED)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2

test-slow: $(TESTED)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 -m slow

# The web page and API over the demo's checkpoint (runs the demo first if there is none).
serve: $(STAMP)
	test -f runs/demo/checkpoints/latest || $(BIN)/rnncap demo
	$(BIN)/rnncap serve runs/demo

clean:
	rm -rf $(VENV) .cache runs *.egg-info .pytest_cache
