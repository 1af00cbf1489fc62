# The README's two set-up commands are `make demo` and `make test`; each creates .venv and
# installs what it needs the first time, again when pyproject.toml or constraints.txt change.
# torch, torchvision and ray come at the versions of constraints.txt, the one list that
# cluster/gpu.yaml and cluster/slurm.sbatch use too (a newer torch would pull several GB).
# `make install TORCH="torch==X torchvision==Y"` installs another torch now, and keeps it for
# later installs (in .venv/torch.txt) until `make clean`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH  ?=
# What pip may install: constraints.txt, its torch lines replaced by the TORCH kept.
PINS   := $(VENV)/constraints.txt

.PHONY: install demo test test-slow lint bench clean gpu-check

install: $(STAMP)

# An explicit TORCH= always reinstalls (the stamp alone would say "up to date").
ifneq ($(strip $(TORCH)),)
.PHONY: $(STAMP)
endif

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(strip $(TORCH)),printf '%s\n' $(TORCH) > $(VENV)/torch.txt)
	{ grep -Ev '^(torch|torchvision)[^a-z_-]' constraints.txt; \
	  if [ -f $(VENV)/torch.txt ]; then cat $(VENV)/torch.txt; \
	  else grep -E '^(torch|torchvision)[^a-z_-]' constraints.txt; fi; } > $(PINS)
	$(BIN)/python -m pip install -q -c $(PINS) -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m jersey_ray.sweep phaseB --demo

# Tests run in a random order (pytest-randomly, which also reseeds random and numpy before each
# test), so a test that depends on another's leftovers fails here, not in someone's fresh clone.
# The seed is printed first: `make test TEST_SEED=1234` replays that order, and
# `make test TEST_SEED=off` runs in file order.
test: $(STAMP)
	@seed="$(TEST_SEED)"; [ -n "$$seed" ] || seed=$$(od -An -N4 -tu4 /dev/urandom | tr -d ' '); \
	if [ "$$seed" = off ]; then order="-p no:randomly"; echo "test order: file order"; \
	else order="-p randomly --randomly-seed=$$seed"; \
	echo "test order: random, seed $$seed (replay: make test TEST_SEED=$$seed)"; fi; \
	$(BIN)/python -m pytest $$order $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure here"; fi; \
	if [ $$rc -ne 0 ] && [ "$$seed" != off ]; then echo "replay this order: make test TEST_SEED=$$seed"; fi; \
	exit $$rc

# The long end-to-end runs the default suite leaves out (marked slow: resume after SIGINT, a
# retried fault, a two-node cluster, real ASHA runs, trackers, the generalization sweep): about
# 10 minutes on 2 cores.
test-slow: $(STAMP)
	$(MAKE) test PYTEST_ARGS="-m slow $(PYTEST_ARGS)"

# mypy reads its settings from pyproject.toml ([tool.mypy]: the jersey_ray package).
lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

# On a machine with one CUDA GPU (README, "GPU check"): the CUDA tests, the training, packing
# and inference benchmarks and a short sweep in about 8 minutes; OUT/gpu-check.md is the report.
# No install step, so a bare GPU machine whose python3 has PyTorch runs it too: Ray is unpacked
# from .whl/ (../shared/tools/gpu-wheels.sh) into .site/ when it is not importable.
GPU_PY   ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
GPU_ARGS ?= --out results/gpu-check --budget-min 8
gpu-check:
	@if ! PYTHONPATH="$$PWD/.site" $(GPU_PY) -c "import ray" 2>/dev/null && [ -f .whl/ray-slim.tar.xz ]; then \
	  mkdir -p .site && tar xJf .whl/ray-slim.tar.xz -C .site && \
	  $(GPU_PY) -m pip install -q --no-index --no-deps --upgrade --target .site .whl/*.whl; fi; \
	PYTHONPATH="$$PWD/.site:$$PWD$${PYTHONPATH:+:$$PYTHONPATH}" $(GPU_PY) -m jersey_ray.bench gpu $(GPU_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
