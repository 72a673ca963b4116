# reloop: the two set-up commands are `make demo` (main job) and `make test` (test suite).
# Both install everything they need into .venv first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export PYTHONHASHSEED := 0

.PHONY: install install-bench test test-slow lint bench bench-train demo demo-live demo-check airflow-ui airflow-ui-check repro lock clean help reports-check

help:
	@echo "make demo         install if needed, then run the Airflow DAG over a week of the built-in world"
	@echo "make demo-live    install if needed, then the live loop: the world drives \`reloop serve\` over HTTP"
	@echo "make repro        install if needed, then \`dvc repro\`: one period (params.yaml pipeline.date)"
	@echo "make reports-check open a workspace's report site (REPORTS_DIR, default build/demo) in headless Chromium"
	@echo "make demo-check   the demo twice, the second beside a CPU-heavy job: the tables must be identical"
	@echo "make airflow-ui   the Airflow UI of the project-local home on http://127.0.0.1:8080 (user admin)"
	@echo "make airflow-ui-check  check the runs the UI shows after make demo; screenshot docs/img/airflow-runs.png"
	@echo "make install      create .venv and install reloop with its dev tools"
	@echo "make test         install if needed, then run the test suite (slow tests excluded)"
	@echo "make test-slow    run only the tests marked slow"
	@echo "make faults       the fault campaign: bad inputs and injected faults (slow)"
	@echo "make bench        run every benchmark; figures go to benchmarks/results/"
	@echo "make lint         ruff, and import-linter (the layers of pyproject.toml)"

ROOT       := $(CURDIR)
# Airflow's metadata DB and logs live in the project-local AIRFLOW_HOME, created by the install.
AIRFLOW_ENV := AIRFLOW_HOME=$(ROOT)/.airflow AIRFLOW__CORE__DAGS_FOLDER=$(ROOT)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False

install: $(STAMP)

# The last step configures the project-local Airflow home for this machine: API server and health
# check on 127.0.0.1, no log server, [core] parallelism = CPUs (src/reloop/ops/airflow.py).
# pip's and Airflow's output go to logs in .venv (their last lines are shown if a step fails).
$(STAMP): pyproject.toml constraints.txt
	@echo "make install: .venv with reloop and its pinned stack (pip's log: $(VENV)/install.log)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@($(BIN)/python -m pip install --upgrade pip \
		&& $(BIN)/python -m pip install -c constraints.txt -e '.[dev]') > $(VENV)/install.log 2>&1 \
		|| (tail -30 $(VENV)/install.log; exit 1)
	@$(AIRFLOW_ENV) $(BIN)/airflow db migrate > $(VENV)/airflow-db-migrate.log 2>&1 \
		|| (tail -20 $(VENV)/airflow-db-migrate.log; exit 1)
	@$(BIN)/python -m reloop.ops.airflow $(ROOT)/.airflow
	@touch $(STAMP)

install-bench: $(BENCH_STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# The main job: the real Airflow DAG (dag.test, in-process) over DEMO_DAYS simulated days of the
# built-in world, from an empty registry, in $(DEMO_DIR) (every relative path of params.yaml
# resolves there), with a project-local AIRFLOW_HOME; then the per-day table.
DEMO_DIR   ?= build/demo
DEMO_START ?= 2026-01-01
DEMO_END   ?= 2026-01-07

demo: install
	@rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	@echo "make demo: the Airflow DAG over $(DEMO_START) .. $(DEMO_END) of the built-in world, in $(DEMO_DIR)"
	@cd $(DEMO_DIR) && $(ROOT)/$(BIN)/reloop backfill --start $(DEMO_START) --end $(DEMO_END) \
		--params $(ROOT)/params.yaml --airflow-home $(ROOT)/.airflow --dags-folder $(ROOT)/dags
	@cd $(DEMO_DIR) && $(ROOT)/$(BIN)/reloop report --start $(DEMO_START) --end $(DEMO_END) \
		--params $(ROOT)/params.yaml

# Determinism you can check: the demo's job twice in fresh workspaces, the second while a CPU-heavy
# job (one busy process per CPU) runs beside it; the per-period tables and model ids must match.
demo-check: install
	@$(BIN)/python -m reloop.ops.democheck --out build/demo-check --start $(DEMO_START) \
		--end $(DEMO_END) --params $(ROOT)/params.yaml --airflow-home $(ROOT)/.airflow \
		--dags-folder $(ROOT)/dags

# The Airflow UI of the project-local home (the runs of `make demo` / `reloop backfill`), on
# 127.0.0.1:8080. Log in as `admin`; the password is generated on the first start into
# .airflow/simple_auth_manager_passwords.json.generated (printed below once it exists).
AIRFLOW_UI_PORT ?= 8080
airflow-ui: install
	@echo "Airflow UI: http://127.0.0.1:$(AIRFLOW_UI_PORT)  user: admin  password: in .airflow/simple_auth_manager_passwords.json.generated"
	@test ! -f .airflow/simple_auth_manager_passwords.json.generated || cat .airflow/simple_auth_manager_passwords.json.generated; echo
	$(AIRFLOW_ENV) $(BIN)/airflow api-server --host 127.0.0.1 --port $(AIRFLOW_UI_PORT)

# What the Airflow UI shows after `make demo`: every backfill run dated by its period, with its real
# duration (checked through the REST API), and a screenshot of the runs page (headless Chromium).
airflow-ui-check: install
	$(BIN)/python -m reloop.ops.airflow_ui --airflow-home $(ROOT)/.airflow \
		--dags-folder $(ROOT)/dags --out docs/img/airflow-runs.png

# The live loop: `reloop serve` on a free loopback port, the built-in world sending its requests
# and clicks over HTTP (DEMO_LIVE_REQUESTS a day), the Airflow DAG retraining each day on what the
# server logged and the server hot-swapping to what it promoted; then the per-day table.
DEMO_LIVE_DIR      ?= build/demo-live
DEMO_LIVE_DAYS     ?= 3
DEMO_LIVE_REQUESTS ?= 20000
# the last day driven (DEMO_START + DEMO_LIVE_DAYS - 1), for the report
DEMO_LIVE_END      ?= $(shell $(PYTHON) -c "import datetime as d; print(d.date.fromisoformat('$(DEMO_START)') + d.timedelta(days=$(DEMO_LIVE_DAYS) - 1))")

demo-live: install
	@rm -rf $(DEMO_LIVE_DIR) && mkdir -p $(DEMO_LIVE_DIR)
	@echo "make demo-live: the built-in world drives reloop serve for $(DEMO_LIVE_DAYS) days, in $(DEMO_LIVE_DIR)"
	@cd $(DEMO_LIVE_DIR) && time $(ROOT)/$(BIN)/reloop drive --start $(DEMO_START) \
		--days $(DEMO_LIVE_DAYS) --requests-per-day $(DEMO_LIVE_REQUESTS) --retrain dag \
		--params $(ROOT)/params.yaml --airflow-home $(ROOT)/.airflow --dags-folder $(ROOT)/dags
	@cd $(DEMO_LIVE_DIR) && $(ROOT)/$(BIN)/reloop report --start $(DEMO_START) \
		--end $(DEMO_LIVE_END) --params live-params.yaml

# The report site of a workspace (default: the demo's), rebuilt and opened in headless Chromium:
# every page must render with its styles and request nothing from the network (docs/reports.md).
# Screenshots go to $(REPORTS_DIR)/reports/screenshots. Needs chromium (apt-get install -y chromium).
REPORTS_DIR    ?= $(DEMO_DIR)
REPORTS_PARAMS ?= $(ROOT)/params.yaml

reports-check: install
	@test -d $(REPORTS_DIR) || (echo "no workspace at $(REPORTS_DIR): run make demo first"; exit 1)
	cd $(REPORTS_DIR) && $(ROOT)/$(BIN)/python -m reloop.ops.browser \
		--params $(REPORTS_PARAMS) --out reports/screenshots

# `dvc repro` of dvc.yaml: one period of the loop in this checkout (its stages call `reloop`).
repro: install
	PATH="$(ROOT)/$(BIN):$$PATH" $(BIN)/dvc repro

test: install
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

# The fault campaign alone: bad inputs and injected faults, the slow ones included;
# prints its summary table at the end.
.PHONY: faults
faults: install
	$(BIN)/python -m pytest tests/faults -m "slow or not slow"

lint: install
	$(BIN)/ruff check src tests benchmarks dags
	$(BIN)/lint-imports

bench: install-bench
	$(BIN)/python -m benchmarks.run_all

bench-train: install-bench
	$(BIN)/python -m benchmarks.train_throughput

lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^reloop' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
