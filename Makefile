# make train   - set up the environment if needed, then run the main job (LeNet-5 on the embedded digits)
# make test    - set up the environment if needed, then run the test suite
# make test-fast - the suite less its end-to-end, multi-process and Slurm files (between edits)
# make lint    - ruff: pyflakes, pycodestyle and the import order (pyproject.toml's [tool.ruff])
# make docs    - the manual (docs/) as a site in build/docs, strictly: a broken link fails it
# make gpu-kit  - here, online: the wheels a GPU machine without network lacks, packed in parts (gpu-kit/)
# make gpu-check - on a GPU machine: the GPU tests and benchmarks (gpu-check/summary.md); exit 3 without a GPU
# Extra trainer overrides: make train ARGS="model=alexnet trainer.max_epochs=1"
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pip warns about every configured index folder that does not exist (some pip set-ups list several): hide that noise
QUIET_PIP := grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: train test test-fast lint docs gpu-kit gpu-check install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@echo "Setting up $(VENV) (first time: a few minutes)..."
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# compat: the project folder on sys.path, so Hydra's plugin discovery (pkgutil over hydra_plugins/) finds the Slurm launcher
	@$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,lint,export,docs]' --config-settings editable_mode=compat 2>&1 | $(QUIET_PIP)
	@$(PY) -c "import torch, torchvision, pytorch_lightning, hydra, wandb, nvidia.dali, torchmetrics, sklearn, rich, matplotlib, onnx, onnxscript, onnxruntime, safetensors, mkdocs, material"
	@touch $(STAMP)

train: $(STAMP)
	$(PY) -m trainer $(ARGS)

# A test file at a time per worker (pytest-xdist), one worker per core, so that a file's fixtures (a trained run, a
# local Slurm cluster) are made once; the files in tests/conftest.py's order (in_worker_order), which
# --no-loadscope-reorder keeps. (One worker more than the cores: 9 min 53 s against 9 min 58 s and 10 min 26 s on 2.)
TEST_WORKERS ?= auto
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# Between edits: the suite less the end-to-end, multi-process and Slurm files (the `slow` mark, tests/conftest.py)
test-fast: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet
	@echo "the manual: build/docs/index.html"

gpu-kit: $(STAMP)
	$(PY) -m tools.gpu_check.kit $(ARGS)

# On a GPU machine: the project's .venv when there is one, else the machine's own python3 with the kit
# (no install, no network). A GPU machine without network runs it in stages instead: docs/speed.md, "Measuring on a GPU machine".
gpu-check:
	$(if $(wildcard $(PY)),$(PY),python3) -m tools.gpu_check --out gpu-check \
	  $(if $(wildcard $(PY)),,$(if $(wildcard gpu-kit/manifest.json),--kit gpu-kit)) $(ARGS)

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache gpu-check build/docs
