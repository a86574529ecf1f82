# Kinesis -> Spark -> Delta Lake tables on S3. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# LocalStack 4.14.0 (the last release that runs without an account token) needs Python 3.12+;
# it gets a virtualenv of its own, cached outside the checkout so fresh clones reuse it.
LOCALSTACK_VERSION := 4.14.0
LOCALSTACK_VENV ?= $(HOME)/.cache/news-etl/localstack-$(LOCALSTACK_VERSION)
LOCALSTACK_PYTHON ?= $(shell for p in python3.13 python3.12 \
	"$$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3 "$$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3; do \
	"$$p" -c 'import sys; assert sys.version_info >= (3, 12); print(sys.executable)' 2>/dev/null && break; done)
# Pins without which LocalStack 4.14.0's runtime fails at start (docs/testing.md, "The emulators").
LOCALSTACK_PINS := 'localstack-core[runtime]==$(LOCALSTACK_VERSION)' 'cbor2<5.8' service_identity \
	'pyopenssl<24.3' 'cryptography<44'
# `make test-compose` keeps what it downloads here: Debian trees, Docker Compose (see tests/containers).
CONTAINERS_CACHE ?= $(HOME)/.cache/news-etl/containers
PYTEST_ARGS ?=
# make test runs its test files in this many pytest processes (pytest-xdist): most of a test's time
# is a job's start-up and its waits, so two share the machine's two cores better than one does.
TEST_WORKERS ?= 2
# The S3A jars Spark fetches for a checkpoint on S3 (news_etl.hadoop_s3.IVY_CACHE).
IVY_CACHE ?= $(or $(NEWS_ETL_IVY),$(HOME)/.cache/news-etl/ivy)
BENCH_ARGS ?=
# bench.steady: e.g. "--minutes 2" for a quick look (the default is 10 minutes a run, two runs)
STEADY_ARGS ?=
FAULT_CYCLES ?= 10
HOSTILE_EXAMPLES ?= 3
# Compose's settings, so that `make inspect` looks where `docker compose up` wrote.
-include .env
# `make up EMULATOR=moto` runs the pipeline on moto server instead of LocalStack.
EMULATOR ?= localstack
COMPOSE ?= docker compose
COMPOSE_TARGETS := $(if $(filter moto,$(EMULATOR)),--profile moto up --build --attach-dependencies \
	moto-populate moto-etl,up --build)
EMULATOR_PORT := $(if $(filter moto,$(EMULATOR)),$(or $(MOTO_PORT),5001),$(or $(LOCALSTACK_PORT),4566))
ENDPOINT ?= http://localhost:$(EMULATOR_PORT)
S3_BUCKET ?= news-data
STREAM_NAME ?= news
CHECKPOINT_DIR ?= checkpoints/$(STREAM_NAME)
# spark-submit --py-files takes this one file (docs/cluster.md).
DIST_ZIP := dist/news_etl.zip
QUIET_PIP := PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_WARN_SCRIPT_LOCATION=1
# The operator tools (inspect, versions, compact) against the emulator's port on the host.
TOOLS = AWS_ENDPOINT_URL=$(ENDPOINT) AWS_REGION=$${AWS_REGION:-us-east-1} AWS_ACCESS_KEY_ID=$${AWS_ACCESS_KEY_ID:-test} \
	AWS_SECRET_ACCESS_KEY=$${AWS_SECRET_ACCESS_KEY:-test} $(BIN)/python -m news_etl.tools

.PHONY: help check install localstack jars dist up down logs inspect verify versions compact faults test test-unit \
	compose-images test-compose bench lint fmt populate etl clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

check: ## Check the test prerequisites: Python 3.11+, Java 17+, Python 3.12+ for LocalStack, npm, curl
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"' \
		&& echo "python: $$($(PYTHON) --version)"
	@java -version 2>&1 | head -1 | grep -Eq '"(1[7-9]|[2-9][0-9])' \
		&& echo "java: $$(java -version 2>&1 | head -1)" || { echo "Java 17+ needed (for Spark)"; exit 1; }
	@test -n "$(LOCALSTACK_PYTHON)" && echo "python for LocalStack: $(LOCALSTACK_PYTHON)" \
		|| { echo "LocalStack $(LOCALSTACK_VERSION) needs Python 3.12+: install one or set LOCALSTACK_PYTHON"; exit 1; }
	@command -v npm >/dev/null && echo "npm: $$(npm --version)" \
		|| { echo "npm needed: LocalStack installs its Kinesis backend from npm"; exit 1; }
	@command -v curl >/dev/null && echo "curl: $$(curl --version | head -1 | cut -d' ' -f2)" \
		|| { echo "curl needed: the tests run the compose file's LocalStack healthcheck"; exit 1; }

install: $(VENV)/.installed ## Create .venv with both services, the tests and the tools

$(VENV)/.installed: requirements-dev.txt populate-script/requirements.txt etl-processor/requirements.txt \
		populate-script/pyproject.toml etl-processor/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(QUIET_PIP) $(BIN)/pip install -q --upgrade pip 2> >(grep -v "is ignored: it is neither" >&2)
	$(QUIET_PIP) $(BIN)/pip install -q -r requirements-dev.txt 2> >(grep -v "is ignored: it is neither" >&2)
	touch $@

localstack: $(LOCALSTACK_VENV)/.installed ## Build the cached LocalStack virtualenv the tests start

$(LOCALSTACK_VENV)/.installed:
	@test -n "$(LOCALSTACK_PYTHON)" || { echo "LocalStack needs Python 3.12+: set LOCALSTACK_PYTHON"; exit 1; }
	$(LOCALSTACK_PYTHON) -m venv $(LOCALSTACK_VENV)
	$(QUIET_PIP) $(LOCALSTACK_VENV)/bin/pip install -q $(LOCALSTACK_PINS) 2> >(grep -v "is ignored: it is neither" >&2)
	touch $@

dist: $(DIST_ZIP) ## Build dist/news_etl.zip, the job's package as one file for spark-submit --py-files

$(DIST_ZIP): $(shell find etl-processor/news_etl -name '*.py') | install
	mkdir -p $(@D)
	cd etl-processor && $(abspath $(BIN))/python -c 'import pathlib, sys, zipfile; \
		archive = zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED); \
		[archive.write(path) for path in sorted(pathlib.Path("news_etl").rglob("*.py"))]' $(abspath $@)

up: ## docker compose up: LocalStack, populate and the ETL (EMULATOR=moto for moto server)
	$(COMPOSE) $(COMPOSE_TARGETS)

# LocalStack Community and moto keep no state once stopped, so the checkpoints go with them.
down: ## Stop the containers and delete their volumes (docker compose down -v): the next up starts over
	$(COMPOSE) --profile moto --profile cluster down --volumes

logs: ## Follow the services' logs
	$(COMPOSE) --profile moto --profile cluster logs --follow

inspect: install ## List the bucket's objects, count rows, show quarantine reasons, a few rows (EMULATOR=moto too)
	$(TOOLS) inspect --bucket $(S3_BUCKET)

verify: install ## Recount the host ETL's S3 output against its checkpoint's metrics (CHECKPOINT_DIR=...)
	AWS_ENDPOINT_URL=$${AWS_ENDPOINT_URL:-$(ENDPOINT)} AWS_REGION=$${AWS_REGION:-us-east-1} \
		AWS_ACCESS_KEY_ID=$${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=$${AWS_SECRET_ACCESS_KEY:-test} \
		$(BIN)/python -m news_etl.tools verify --checkpoint $(CHECKPOINT_DIR)

versions: install ## List the enriched Delta table's versions: batch and rows of each (pin one to train on)
	$(TOOLS) versions --bucket $(S3_BUCKET)

compact: install ## Vacuum the Delta tables, then compact their small files (safe while the job runs)
	$(TOOLS) compact --bucket $(S3_BUCKET)

jars: $(IVY_CACHE)/.fetched ## Fetch the S3A jars (a checkpoint on S3) into the Ivy cache, once

# Before the tests, so that no two test processes resolve them into an empty cache at once.
$(IVY_CACHE)/.fetched: etl-processor/news_etl/hadoop_s3.py | install
	NEWS_ETL_IVY=$(IVY_CACHE) SPARK_LOCAL_IP=127.0.0.1 $(BIN)/python -m news_etl.tools jars --fetch
	touch $@

test: install localstack jars ## Run all tests; they start their own moto and LocalStack on 127.0.0.1
	LOCALSTACK_VENV=$(LOCALSTACK_VENV) $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile \
		-m "not slow and not containers" $(PYTEST_ARGS)

test-unit: install ## Run only the fast tests (no emulators)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

compose-images: install localstack ## Build the stand-in images test-compose runs on (podman; root; cached, about 5 min cold)
	CACHE=$(CONTAINERS_CACHE) LOCALSTACK_VENV=$(LOCALSTACK_VENV) tests/containers/prepare.sh

test-compose: compose-images ## docker compose up in real containers: podman, stand-in base images (root; 5-10 min)
	CACHE=$(CONTAINERS_CACHE) $(BIN)/pytest -m containers tests/containers $(PYTEST_ARGS)

faults: install localstack ## Fault matrix (crash cycles, throttling, S3 failures): prints a results table
	mkdir -p bench/results && rm -f bench/results/faults.jsonl
	FAULT_CYCLES=$(FAULT_CYCLES) HOSTILE_EXAMPLES=$(HOSTILE_EXAMPLES) FAULTS_REPORT=bench/results/faults.jsonl \
		LOCALSTACK_VENV=$(LOCALSTACK_VENV) \
		$(BIN)/pytest -m faults -q $(PYTEST_ARGS) || status=$$?; \
		$(BIN)/python -m bench.faults_table bench/results/faults.jsonl && exit $${status:-0}

bench: install localstack ## Benchmarks (about 75 min): ETL vs raw and lean drain vs naive baseline, steady state, KPL aggregates vs plain, populate vs bare loop, dedup state memory, compaction, near-duplicate clusters; bench/results/
	LOCALSTACK_VENV=$(LOCALSTACK_VENV) $(BIN)/python -m bench.bench_etl $(BENCH_ARGS)
	$(BIN)/python -m bench.steady $(STEADY_ARGS)
	$(BIN)/python -m bench.aggregation $(BENCH_ARGS)
	$(BIN)/python -m bench.state_memory
	$(BIN)/python -m bench.compaction
	$(BIN)/python -m bench.near_dup

lint: install ## Lint and check formatting (ruff)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: install ## Format and fix what ruff can
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

populate: install ## Put articles into STREAM_NAME at AWS_ENDPOINT_URL (flags via ARGS="...")
	$(BIN)/python -m news_populate $(ARGS)

etl: install ## Run the ETL on the host (STREAM_NAME, S3_BUCKET, AWS_ENDPOINT_URL...; flags via ARGS="...")
	$(BIN)/python -m news_etl $(ARGS)

clean: ## Remove .venv and caches (the LocalStack virtualenv stays: rm -r $(LOCALSTACK_VENV))
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis dist
	rm -rf populate-script/*.egg-info etl-processor/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
