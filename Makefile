# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo example bench clean

# pip would compile every module of every package on one core (a minute and a half here); instead
# Python compiles what is imported, once, into the venv: so bytecode may be written, whatever the shell says.
export PYTHONDONTWRITEBYTECODE :=

# torch first, pinned, with pip (whose configuration finds a local CPU wheel), so that nothing resolves a
# CUDA build from the index; then the rest with uv, installed by pip: it looks up the index for a
# hundred packages at once, where pip spends a minute here asking one at a time. Where uv fails, pip.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --no-compile torch==2.13.0 uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[test]' torch==2.13.0 \
	  || $(BIN)/pip install -q --no-compile -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# 2 workers; tests sharing a trained fixture or a Ray cluster run on one, slow tests first (tests/conftest.py)
test: $(STAMP)
	$(BIN)/ruff check src tests bench docs/examples examples
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --no-loadscope-reorder --durations=15 tests

lint: $(STAMP)
	$(BIN)/ruff check src tests bench docs/examples examples

demo: $(STAMP)
	$(BIN)/autoscale demo

# examples/own_trainer end to end (run, report, export, check, eval): about 2 minutes on 2 cores. Not
# in `make test`: each of its 17 runs is a process that imports torch and transformers.
example: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider examples/own_trainer/test_example.py

# Each script writes bench/results/<name>.md; BENCHMARKS.md is those sections in this order.
# headroom then record_v2 (the benchmark of record, version 2: ~2 h) come first; record v1 keeps its place.
BENCHES := headroom record_v2 allocation sampler trainer simworld coupling snr ray_executor
BENCH_ARGS_sampler := --with-demo
bench: $(STAMP)
	for b in $(BENCHES); do $(BIN)/python bench/$$b.py $(BENCH_ARGS_$$b) || exit 1; done
	$(BIN)/autoscale bench --out bench/results/record.md
	$(BIN)/autoscale bench --methods --out bench/results/methods.md
	{ cat bench/HEADER.md; for b in $(BENCHES) record methods; do echo; cat bench/results/$$b.md; done; } > BENCHMARKS.md

clean:
	rm -rf $(VENV) build dist src/*.egg-info
