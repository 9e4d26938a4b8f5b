# Set-up and the two main commands. `make study` runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
SPACE  ?= studies/quick.yaml
# pytest-xdist workers: one per CPU (the tests are single-threaded, interpreted kernels mostly);
# an idle worker takes queued tests from a busy one, so the slow interpreted ones spread evenly.
TEST_JOBS ?= logical

.PHONY: venv study test bench clean

# torch goes in first: a torch the machine already has (the venv sees the system's packages) is
# kept, with its CUDA build; otherwise $(TORCH_SPEC), here the local CPU wheel.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

study: venv
	$(PY) -m ablate.study --space $(SPACE)

test: venv
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist worksteal

bench: venv
	$(PY) -m benchmarks.cpu_reference

clean:
	rm -rf $(VENV) runs .pytest_cache
