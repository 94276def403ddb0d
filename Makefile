# streamproc — the two commands: `make demo` and `make test`. Both set everything up first:
# a virtualenv with the project and its pinned dependencies, and Apache Kafka's jars (resolved
# from Maven Central with mvn, cached in ~/.cache/streamproc/kafka).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
BENCH_ARGS ?=


.PHONY: help setup tools kafka-jars lint format typecheck unit test integration demo bench quality clean distclean

help:
	@echo "make demo    local Kafka, a worker and a drifting simulated stream; live view, drift report"
	@echo "make test    lint, type-check and run every test, integration tests on real Kafka"
	@echo "make unit    the broker-free tests only (fast)"
	@echo "make bench   throughput, latency and cost per event on a local Kafka (BENCH_ARGS=...)"
	@echo "make quality the model-quality targets on 600,000 events through a local Kafka (~7 min)"
	@echo "make lint    ruff check + format check;  make typecheck: mypy --strict"
	@echo "make clean   stop local Kafka started by the demo and remove its data"

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is needed, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP) kafka-jars tools

# promtool checks the alert rules; Debian's prometheus package ships it. chromium renders the
# worker's /status page in tests/integration/test_status_page.py (headless).
tools:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing promtool (Debian package prometheus)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	}
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian package chromium, for the status-page test)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	}

kafka-jars: $(STAMP)
	$(BIN)/streamproc kafka fetch

lint: $(STAMP)
	$(BIN)/ruff check streamproc agents tests benchmarks
	$(BIN)/ruff format --check streamproc agents tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix streamproc agents tests benchmarks
	$(BIN)/ruff format streamproc agents tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -m "not integration" -q $(PYTEST_ARGS)

test: setup lint typecheck
	$(BIN)/streamproc schemas check
	$(BIN)/pytest -q --doctest-modules streamproc tests $(PYTEST_ARGS)

integration: setup
	$(BIN)/pytest -m integration -q $(PYTEST_ARGS)

demo: setup
	$(BIN)/streamproc demo

# Throughput, latency and cost of the pipeline on a local Kafka (BENCH_ARGS: e.g. --runs 1).
bench: setup
	$(BIN)/streamproc bench $(BENCH_ARGS)

# The quality targets on the predictions the workers publish, at full size (QUALITY_ARGS: e.g.
# --workers 2). Starts its own Kafka on port 29392 and stops it afterwards.
QUALITY_ARGS ?=
QUALITY_KAFKA := .streamproc/quality/kafka
quality: setup
	$(BIN)/streamproc kafka start --port 29392 --data-dir $(QUALITY_KAFKA)
	STREAMPROC_BOOTSTRAP_SERVERS=127.0.0.1:29392 $(BIN)/streamproc evaluate --kafka \
		--log-dir .streamproc/quality/logs $(QUALITY_ARGS); \
		status=$$?; $(BIN)/streamproc kafka stop --data-dir $(QUALITY_KAFKA); exit $$status

clean:
	-$(BIN)/streamproc kafka stop --data-dir .streamproc/demo/kafka --wipe
	-$(BIN)/streamproc kafka stop --data-dir $(QUALITY_KAFKA) --wipe
	rm -rf .streamproc .pytest_cache .mypy_cache .ruff_cache

distclean: clean
	rm -rf $(VENV)
