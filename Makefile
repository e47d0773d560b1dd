# Two commands set everything up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-$(shell cat requirements/lock.txt pyproject.toml | sha256sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: venv control-plane system-deps lint test test-fast demo demo-down crds lock clean bench-operator bench-serving soak \
	images push-images

$(INSTALLED): requirements/lock.txt pyproject.toml hack/install-venv.sh
	@echo "==> installing the pinned environment into $(VENV)/ (first time: ~3 GB of wheels)"
	bash hack/install-venv.sh
	rm -f $(VENV)/.installed-* && touch $@

venv: $(INSTALLED)

control-plane:
	@echo "==> control-plane binaries (built once from the Go module proxy into ~/.cache/llm-operator)"
	@bash hack/build-control-plane.sh

system-deps:
	@bash hack/install-prometheus.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	MYPYPATH=operator:serving:dev $(BIN)/mypy
	$(BIN)/lint-imports

test: venv control-plane system-deps lint
	$(BIN)/pytest $(PYTEST_ARGS)

# Pure tests only: no control plane, no Ray.
test-fast: venv
	$(BIN)/pytest -m "not cluster and not serving and not prometheus" $(PYTEST_ARGS)

demo: venv control-plane system-deps
	$(BIN)/python -m llm_dev.demo up

demo-down:
	$(BIN)/python -m llm_dev.demo down

# Benchmarks print tables; record results in bench/RESULTS.md.
bench-operator: venv control-plane
	$(BIN)/python bench/operator_scale.py

bench-serving: venv
	$(BIN)/python bench/serving_overhead.py
	$(BIN)/python bench/prefix_routing.py

# The reliability suite's long variants.
soak: venv control-plane
	RELIABILITY_KILLS=50 RELIABILITY_BATCH=50 RELIABILITY_WRITERS_SECONDS=60 $(BIN)/pytest tests/reliability -s

crds: venv
	$(BIN)/python -m llm_operator.crd > crds/llmops.dev_llmdeployments.yaml

lock:
	bash hack/lock.sh

# The two images, tagged with the project version (README: "Build and push the images").
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
REGISTRY ?= ghcr.io/llmops-dev
DOCKER ?= docker
OPERATOR_IMAGE := $(REGISTRY)/llm-operator:$(VERSION)
SERVE_IMAGE := $(REGISTRY)/llm-serve:$(VERSION)

images:
	$(DOCKER) build -f Dockerfile.operator -t $(OPERATOR_IMAGE) .
	$(DOCKER) build -f Dockerfile.serve -t $(SERVE_IMAGE) .

push-images: images
	$(DOCKER) push $(OPERATOR_IMAGE)
	$(DOCKER) push $(SERVE_IMAGE)

clean: demo-down
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
