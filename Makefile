VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test bench fuzz clean

# torch is pinned first: 2.13.0 (CPU) lies on the local disk; an unpinned torch pulls CUDA builds.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/sparsesql demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) benchmarks/quality.py

fuzz: $(VENV)/.installed
	$(PY) benchmarks/fuzz.py --cases 20000

clean:
	rm -rf $(VENV) .sparsesql
