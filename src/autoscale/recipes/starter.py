"""`autoscale init`: commented starter experiments, one per kind of trainer.

Each is a valid config as written (tests/test_starter.py loads both); the comments say what to
change. The full reference of every key is the docstring of `autoscale.experiment.config`.
"""

from __future__ import annotations

OURS = """\
# An AutoScale experiment trained by autoscale's own proxy trainer on your corpus.
#   autoscale run experiment.yaml        (resumable: run it again after a stop)
#   autoscale report <output folder>     (plots and an HTML page)
# Every key: python -c "import autoscale.experiment.config as c; help(c)"
# Relative paths are relative to this file.
name: my-experiment
seed: 0
data:
  sources: corpus            # one file or folder per domain: corpus/web.jsonl, corpus/code/, ...
  store: store               # the token store built from it (only changed domains are redone)
  vocab_size: 8192           # BPE vocabulary trained on the corpus
  val_tokens: 65536          # validation tokens held out per domain
proxy:                       # a small decoder: the proxies only need to rank mixtures
  model: {n_layer: 2, d_model: 128, n_head: 4, seq_len: 256}
  train: {batch_size: 16, lr: 3.0e-3, device: auto}
ddo:
  budgets: [10M, 40M]        # two small budgets: 2m+1 proxies at each (m: your domains)
  replicates: 2              # seeds per design point: measures the noise, gives intervals
  bootstrap: 200
  max_epochs: 4              # no mixture repeats a domain more often than this
target:
  budget: 160M               # the budget you will train at (AutoScale extrapolates to it)
  validate: true             # train the predicted mixture and the baselines there, and compare
  compare: [uniform, natural, ddo]
  seeds: [0, 1, 2]
executor:
  kind: inline               # ray: several runs at once (executor.workers, num_cpus, num_gpus)
  retries: 1
"""

COMMAND = """\
# An AutoScale experiment trained by your own trainer, one process per run.
#   autoscale run experiment.yaml        (resumable: run it again after a stop)
# Your trainer reads the run's mixture ({mixture_json}: {"tokens": {domain: tokens}}), trains, and
# writes {run_dir}/metrics.json; check one by hand first: autoscale check RUN_DIR
# Every key: python -c "import autoscale.experiment.config as c; help(c)"
# Relative paths are relative to this file.
name: my-experiment
seed: 0
data:
  domains: [web, code, books]        # your trainer's domains, in the order of its data
  # validation: [held_out]           # domains your trainer reports but does not train on
ddo:
  budgets: [100M, 400M]              # two small budgets: 2m+1 runs at each (m: the domains)
  replicates: 2                      # seeds per design point: measures the noise, gives intervals
  bootstrap: 200
target:
  budget: 1.6B                       # the budget you will train at (AutoScale extrapolates to it)
  validate: true                     # train the predicted mixture and the baselines there
  compare: [uniform, ddo]            # `natural` needs a token store (the domains' sizes)
  seeds: [0, 1]
executor:
  kind: command
  # {python}: the Python autoscale runs under; other placeholders: {budget}, {seed}, {tokens[web]},
  # {weights[web]}, {domains}, {key}, {label}
  command: ["{python}", train.py, --mixture, "{mixture_json}", --seed, "{seed}", --out, "{run_dir}"]
  trainer_id: my-trainer-v1          # change it when the trainer changes: runs of the old one are not reused
  workers: 1                         # runs at once
  retries: 1
"""

STARTERS = {"ours": OURS, "command": COMMAND}
