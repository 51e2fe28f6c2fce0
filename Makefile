# medvlab: make serve (the lab server) and make test (the test suite) work on a fresh machine.
VENV   ?= .venv
BIN    := $(VENV)/bin
MODEL  ?= google/medgemma-4b-it
HOST   ?= 127.0.0.1
PORT   ?= 7860
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup setup-bench serve test lint bench clean

setup: $(VENV)/.installed-dev
$(VENV)/.installed-dev: pyproject.toml scripts/setup.sh
	EXTRAS=dev bash scripts/setup.sh

setup-bench: $(VENV)/.installed-dev-bench
$(VENV)/.installed-dev-bench: pyproject.toml scripts/setup.sh
	EXTRAS=dev,bench bash scripts/setup.sh

## The lab server: web UI at http://$(HOST):$(PORT)/, OpenAI-compatible API at /v1. MODEL=tiny runs offline.
serve: setup
	$(BIN)/medvlab serve --model $(MODEL) --host $(HOST) --port $(PORT)

## The test suite (what CI runs).
test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: setup-bench
	$(BIN)/python benchmarks/io_bench.py
	$(BIN)/python benchmarks/sft_bench.py
	$(BIN)/python benchmarks/load_bench.py
	$(BIN)/python benchmarks/seg_bench.py
	$(BIN)/python benchmarks/serve_bench.py
	$(BIN)/python benchmarks/batch_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
