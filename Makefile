# The verbs people type. Each is a thin wrapper over a real command; every one
# depends on `setup`, so a fresh clone needs nothing but Python 3.11.
#
#   make all                  generate the default world, build features, train and evaluate
#   make all DATASET=movielens ML100K_DIR=~/ml-100k      the same on MovieLens-100K
#   make test                 the test suite (CI runs exactly this)
#   make quality              model vs logistic regression and LightGBM on four worlds
#   RECSYS_DATA_DIR=/tmp/w make all IMPRESSIONS=100000   keep worlds apart

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Which data set: synthetic (generated), movielens (ML100K_DIR=the ml-100k folder)
# or csv (CSV_DIR holding users.csv, items.csv, interactions.csv). Each non-default
# data set lives in its own data dir, and dbt reads its attribute mapping from
# vars.datasets in dbt_project.yml. Pass the same DATASET to every later verb.
DATASET ?= $(or $(RECSYS_DATASET),synthetic)
export RECSYS_DATASET := $(DATASET)
ifeq ($(DATASET),synthetic)
export RECSYS_DATA_DIR ?= data
else
export RECSYS_DATA_DIR ?= data/$(DATASET)
# its dbt manifest too, so switching data sets never mixes their feature lists
export DBT_TARGET_PATH ?= $(RECSYS_DATA_DIR)/target
endif
ML100K_DIR ?=
CSV_DIR ?=
TARGET ?= sqlite
export RECSYS_TARGET := $(TARGET)
# Training defaults per data set (configs/<dataset>.json), when the file exists.
TRAIN_CONFIG ?= $(wildcard configs/$(DATASET).json)
CONFIG_ARG := $(if $(TRAIN_CONFIG),--config $(TRAIN_CONFIG),)

IMPRESSIONS ?= 1000000
USERS ?= 20000
ITEMS ?= 5000
DAYS ?= 60
SEED ?= 42
TRAIN_ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup data append features train evaluate all ablate recommend score rank bench quality mlflow-ui test test-spark lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

data: setup
ifeq ($(DATASET),synthetic)
	$(BIN)/python -m seeds_gen synthetic --impressions $(IMPRESSIONS) --users $(USERS) \
		--items $(ITEMS) --days $(DAYS) --seed $(SEED)
else ifeq ($(DATASET),movielens)
	@test -n "$(ML100K_DIR)" || { echo "error: DATASET=movielens needs ML100K_DIR=/path/to/ml-100k" >&2; exit 2; }
	$(BIN)/python -m seeds_gen movielens "$(ML100K_DIR)"
else ifeq ($(DATASET),csv)
	@test -n "$(CSV_DIR)" || { echo "error: DATASET=csv needs CSV_DIR=/folder/with/the/csv/files" >&2; exit 2; }
	$(BIN)/python -m seeds_gen csv --users "$(CSV_DIR)/users.csv" --items "$(CSV_DIR)/items.csv" \
		--interactions "$(CSV_DIR)/interactions.csv"
else
	@echo "error: unknown DATASET=$(DATASET) (synthetic, movielens or csv)" >&2; exit 2
endif

# The next day(s) of the synthetic world (APPEND_DAYS, default 1), for a nightly
# incremental `make features`.
APPEND_DAYS ?= 1
append: setup
	$(BIN)/python -m seeds_gen append --days $(APPEND_DAYS) --seed $(SEED)

# TARGET=spark installs the spark extra (pyspark, Java 17), exports raw.db to
# Parquet for Spark to read, and builds on local Spark; train and evaluate then
# read the tables' Parquet files without Spark.
features: setup
	mkdir -p "$(RECSYS_DATA_DIR)/schemas"  # dbt-sqlite's other schemas, e.g. for --store-failures
ifeq ($(TARGET),spark)
	$(BIN)/pip install --quiet -e ".[spark]"
	$(BIN)/python -m seeds_gen parquet
	SPARK_LOCAL_IP=$${SPARK_LOCAL_IP:-127.0.0.1} $(BIN)/dbt build --target $(TARGET)
else
	$(BIN)/dbt build --target $(TARGET)
endif

# NPROC=2 trains with 2 processes (torchrun, DistributedDataParallel; gloo on CPU)
NPROC ?= 1
TRAINER := $(if $(filter 1,$(NPROC)),$(BIN)/recsys,$(BIN)/torchrun --standalone --nproc_per_node=$(NPROC) -m models_py)

train: setup
	$(TRAINER) train $(CONFIG_ARG) $(TRAIN_ARGS)

evaluate: setup
	$(BIN)/recsys evaluate

# `recsys train` judges its run on test (beside the baselines) and writes the
# report; `make evaluate` recomputes that from the checkpoint when asked.
all: data features train

ablate: setup
	$(BIN)/recsys ablate $(CONFIG_ARG) $(TRAIN_ARGS)

K ?= 10
recommend: setup
	$(BIN)/recsys recommend --user "$(USER)" -k $(K)

score: setup
	$(BIN)/recsys score -k $(K)

rank: setup
	$(BIN)/recsys rank

MLFLOW_PORT ?= 5000
mlflow-ui: setup
	$(BIN)/pip install --quiet "mlflow==3.17.2"
	$(BIN)/mlflow ui --backend-store-uri "sqlite:///$(abspath $(RECSYS_DATA_DIR))/mlflow.db" \
		--port $(MLFLOW_PORT)

BENCH_SIZES ?= 1000000,5000000
bench: setup
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python -m models_py.bench --sizes $(BENCH_SIZES)

# Model quality beside logistic regression and LightGBM on the default world (seeds
# 42 and 3), a small world and the MovieLens fixture; quality.json (~10 minutes).
quality: setup
	$(BIN)/python -m models_py.quality

# The suite on every core (pytest-xdist; at most 4 workers, each test builds its
# own small worlds): about 8 minutes on this 2-core machine, 14 on one worker.
# PYTEST_WORKERS=0 runs it in this process, e.g. to debug one test.
PYTEST_WORKERS ?= auto
test: setup
	$(BIN)/pytest --numprocesses $(PYTEST_WORKERS) --maxprocesses 4 $(PYTEST_ARGS)

# The Spark target: installs the spark extra (pyspark, ~490 MB) and checks on a
# small world that Spark builds the same feature table as SQLite.
test-spark: setup
	$(BIN)/pip install --quiet -e ".[spark]"
	SPARK_LOCAL_IP=127.0.0.1 $(BIN)/pytest -m spark $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check recsys_core seeds_gen models_py tests
	$(BIN)/ruff format --check recsys_core seeds_gen models_py tests
	@# the dbt templater compiles the project, which opens the warehouse: give it a
	@# scratch data dir so linting works on a fresh clone and never touches data/
	tmp=$$(mktemp -d) && RECSYS_DATA_DIR=$$tmp DBT_TARGET_PATH=$$tmp/target \
		$(BIN)/sqlfluff lint dbt_project/models dbt_project/tests; \
		status=$$?; rm -rf $$tmp; exit $$status

clean:
	rm -rf target logs .pytest_cache .ruff_cache
	@echo "kept $(RECSYS_DATA_DIR)/ and $(VENV)/ (remove them by hand to start over)"
