# Quickstart: `make serve` (train if needed, then serve on :3000) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3000
MODELS ?= mlp distilbert
export BENTOML_HOME ?= $(CURDIR)/bentos
export WANDB_MODE ?= offline

.PHONY: install models serve test lint bento clean-models

# One pip command resolves serving + training + dev pins together (see pyproject.toml).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[train,dev]"
	touch $@

install: $(VENV)/.installed

# Train each model kind that the BentoML store (BENTOML_HOME) lacks, on the embedded synthetic data.
models: install
	@missing=""; for kind in $(MODELS); do \
	  $(BIN)/bentoml models get fraud-$$kind:latest >/dev/null 2>&1 || missing="$$missing,$$kind"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Training $${missing#,} into $(BENTOML_HOME)"; \
	  $(BIN)/python -m training -m model=$${missing#,}; \
	else echo "Models found in $(BENTOML_HOME): $(MODELS)"; fi

serve: models
	$(BIN)/bentoml serve service:FraudDetector --port $(PORT)

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bento: models
	$(BIN)/bentoml build

clean-models:
	rm -rf $(BENTOML_HOME)/models
