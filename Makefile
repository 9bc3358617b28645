# mlk8s: the two commands of the README (`make demo`, `make test`) and the helpers they share.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Pip's progress and location warnings drown the output; errors still show.
PIP_FLAGS := --disable-pip-version-check --no-input -q

.PHONY: venv chromium demo up down test test-fast test-cluster lint typecheck bench clean

# The virtualenv is rebuilt whenever a requirements file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) -r requirements.txt -r requirements-dev.txt -c constraints.txt 2>&1 | { grep -v "^WARNING: Location" || true; }; test $${PIPESTATUS[0]} -eq 0
	$(PIP) install $(PIP_FLAGS) --no-deps -e . 2>&1 | { grep -v "^WARNING: Location" || true; }; test $${PIPESTATUS[0]} -eq 0
	# setuptools leaves mlk8s.egg-info in the checkout; with the checkout on sys.path (python -m ...), Airflow would
	# find the airflow.plugins entry point twice.
	rm -rf mlk8s.egg-info
	$(PY) -c "import airflow, mlk8s, mlk8s_airflow, torch, ray, pyarrow"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) scripts/demo.py

# The local Airflow (api-server + UI, scheduler, dag-processor, triggerer) and its Ray pool; AIRFLOW_PORT=8081 moves
# the UI. `make up` twice is fine; `make down` stops what `make up` started (by pid). See docs/local-airflow.md.
up: venv
	PYTHONPATH=scripts $(PY) -m local_airflow up

down:
	@if test -x $(PY); then PYTHONPATH=scripts $(PY) -m local_airflow down; else echo "==> nothing of make up is running"; fi

# The browser tests drive Debian's chromium (never a browser build of Playwright's own): installed when missing.
CHROMIUM := /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { echo "==> installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@test -x $(CHROMIUM) || { echo "!! $(CHROMIUM) is missing: run 'apt-get install -y chromium' as root"; exit 1; }

# Two xdist workers: much of the suite waits on real servers and pods, so a second test runs in that time. Tests
# sharing a costly fixture stay in one worker (tests/conftest.py). TEST_WORKERS=0 runs it all in this process.
TEST_WORKERS ?= 2
test: venv chromium
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

test-fast: venv
	$(PY) -m pytest -m "not slow"

# The cluster-in-a-box tier (tests/cluster, tests/k8s_api's process-kubelet tests): pods really run in their own
# network namespaces, so it needs root. `make test` runs it too.
test-cluster: venv
	$(PY) -m pytest -m cluster

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check dags plugins include

typecheck: venv
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict include/mlk8s

bench: venv
	$(PY) benchmarks/run_all.py

clean:
	rm -rf .airflow .demo .pytest_cache .mypy_cache .ruff_cache
