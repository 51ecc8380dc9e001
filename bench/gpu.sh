#!/usr/bin/env bash
# The accelerator figures in one call: aim ~5 minutes on one H200, so that a failed first try leaves
# time for a second inside an 8-minute call.
#
#   bash bench/gpu.sh --pack              # HERE, once: the demo corpus cut to a few MB per domain,
#                                         # as text, into .gpu-corpus/ (git-ignored; carry it)
#   bash bench/gpu.sh                     # THERE: the three steps on cuda, figures into $OUT (or bench/results/gpu/)
#   bash bench/gpu.sh --dry-run           # here, on CPU: every step at toy size (tests/test_gpu_script.py)
#
# The device machine has no network and gets only a copy of the working tree: no venv, no token
# store. It has torch, numpy, scipy, tokenizers, pyyaml, rich, click, typer and matplotlib; the rest of
# our dependencies (pydantic and its parts) travel as wheels in .whl/ (see --pack), installed into
# /tmp/site. The corpus travels as text and is tokenised there.
#
# Steps (each writes one markdown file):
#   1. trainer.md  the trainer's bf16 throughput and MFU, default proxy at B=64 and a ~124M decoder
#                  (GPT-2 small shape), against the measured bf16 matmul peak (bench/trainer.py)
#   2. snr.md      one row of the signal-to-noise study at 10x its CPU token scale: the bytes L2 d64
#                  proxy, 7 domains, base and code/books x0.2/x3, 3 seeds, at 10.24M tokens (bench/snr.py)
#   3. autoscale.md a 7-domain AutoScale search (2 replicates at 1.28M and 5.12M tokens: 10x the demo's)
#                  and validation at 20.48M tokens with 3 seeds against uniform, natural and the reused
#                  DDO optimum (autoscale run; the table is the run's own output)
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  --pack)
    # the corpus as text (few MB per domain) and the wheels the device machine lacks
    PY=${PYTHON:-.venv/bin/python}
    "$PY" - <<'EOF'
from pathlib import Path
from autoscale.data.demo import default_data_dir, fetch_demo
from autoscale.recipes.demo import slice_corpus
corpus = fetch_demo(default_data_dir() / "demo")
slice_corpus(corpus.dir, Path(".gpu-corpus"), corpus.domains, 4.0)
print("packed", ", ".join(corpus.domains), "into .gpu-corpus/")
EOF
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
      pydantic pydantic-core annotated-types typing-inspection
    echo "carry: .gpu-corpus .whl"
    exit 0 ;;
  "") ;;
  *) echo "usage: bash bench/gpu.sh [--dry-run | --pack]" >&2; exit 2 ;;
esac

if [ "$DRY" = 1 ]; then
  PY=${PYTHON:-.venv/bin/python}
  DEVICE=cpu
  CORPUS=${CORPUS:-tests/fixtures/corpus}
  OUT_DIR=${OUT:-$(mktemp -d)}
else
  PY=${PYTHON:-python3}
  DEVICE=cuda
  CORPUS=${CORPUS:-.gpu-corpus}
  OUT_DIR=${OUT:-bench/results/gpu}
  if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
WORK=${GPU_WORK:-$(mktemp -d)}
mkdir -p "$OUT_DIR"
DOMAINS=$(cd "$CORPUS" && ls ./*.jsonl | sed 's|^\./||; s|\.jsonl$||' | paste -sd, -)
step() { echo "== $1 ($(date +%T))"; }
start=$(date +%s)

step "1/3 trainer throughput and MFU"
if [ "$DRY" = 1 ]; then
  "$PY" bench/trainer.py --device cpu --toy --no-hf --windows 1 --window 0.2 --out "$OUT_DIR/trainer.md"
else
  "$PY" bench/trainer.py --device cuda --no-hf --windows 3 --window 2 --out "$OUT_DIR/trainer.md"
fi

step "2/3 one row of the signal-to-noise study at 10x the CPU token scale"
if [ "$DRY" = 1 ]; then
  SNR=(--budgets 4000 --seeds 0,1 --batch-size 4 --val-tokens 1024)
else
  SNR=(--budgets 10240000 --seeds 0,1,2 --batch-size 64)
fi
"$PY" bench/snr.py --dir "$WORK/snr" --corpus "$CORPUS" --setting "bytes L2 d64" --device "$DEVICE" \
  "${SNR[@]}" --out "$OUT_DIR/snr.md"

step "3/3 AutoScale search and validation on $DOMAINS"
if [ "$DRY" = 1 ]; then
  B1=1000; B2=4000; T=8000; SEEDS="[0, 1]"; BATCH=8; SEQ=32; VAL=1024; EVAL=1024; POINTS=4
else
  B1=1280000; B2=5120000; T=20480000; SEEDS="[0, 1, 2]"; BATCH=64; SEQ=128; VAL=16384; EVAL=null; POINTS=8
fi
cat > "$WORK/gpu.yaml" <<EOF
name: gpu-autoscale
seed: 0
output: $WORK/experiment
data: {store: $WORK/store, sources: $PWD/$CORPUS, vocab_size: 257, val_tokens: $VAL}
proxy:
  model: {kind: decoder, n_layer: 2, d_model: 64, n_head: 2, seq_len: $SEQ}
  train: {batch_size: $BATCH, lr: 3.0e-3, warmup: 0.05, schedule: cosine, device: $DEVICE, threads: 2}
  eval: {points: $POINTS, max_tokens: $EVAL}
ddo: {budgets: [$B1, $B2], ratios: [0.2, 3.0], min_ratio: 0.2, replicates: 2, bootstrap: 100, eval_points: 1, max_epochs: 4}
objective: {metric: perplexity}
target: {budget: $T, validate: true, compare: [uniform, natural, ddo], seeds: $SEEDS}
executor: {kind: inline, retries: 1}
EOF
COLUMNS=160 "$PY" -m autoscale run "$WORK/gpu.yaml" --quiet > "$WORK/run.txt"
{
  echo "## A 7-domain AutoScale search and validation on $DEVICE"
  echo
  echo "Command: \`bash bench/gpu.sh$([ "$DRY" = 1 ] && echo ' --dry-run')\` (step 3; config below). Domains: $DOMAINS."
  echo
  echo '```yaml'; cat "$WORK/gpu.yaml"; echo '```'
  echo
  echo '```'; cat "$WORK/run.txt"; echo '```'
} > "$OUT_DIR/autoscale.md"

echo "== done in $(( $(date +%s) - start )) s; figures in $OUT_DIR: $(cd "$OUT_DIR" && ls | paste -sd' ' -)"
