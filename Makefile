# The two commands a new user runs: `make demo` and `make test`. Both build .venv/ from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint bench clean system-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(BIN)/pip install -q -e '.[test]' 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import airflow_parallel_run, pandas, pyarrow, fsspec, psutil, pytest"
	touch $(STAMP)

# Headless Chromium renders the HTML job report in the tests (Debian's package).
system-deps:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test: lint system-deps
	$(BIN)/python -m pytest -q tests

demo: $(STAMP)
	$(BIN)/python examples/airflow_demo.py

# ruff everywhere, mypy on the package (0 errors); radon's limits are a test
# (tests/test_code_shape.py).
lint: $(STAMP)
	$(BIN)/ruff check airflow_parallel_run tests bench dags examples
	$(BIN)/mypy airflow_parallel_run

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) demo-output airflow-home
