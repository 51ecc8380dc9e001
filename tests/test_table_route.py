"""Every method on numbers you already have: `autoscale plan --method X`, `fit --method X`, `--score`.

- On RegMix's released runs (examples/regmix: 512 mixtures of 17 Pile domains at 1M parameters,
  held-out runs at 1M and 1B), the regressor fitted from the table ranks the held-out runs.
- In a simulated world of 5 domains, `plan --method X` writes the very mixtures `autoscale run`
  trains (through the command executor), and `fit --method X` on those runs gives the same mixture.
- Each bad input is one `error:` line, exit status 2, and nothing written.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.stats import spearmanr

from autoscale.ddo.runs import RunsTable
from autoscale.methods import METHODS
from cli_helpers import run_cli

# one worker builds `pipeline` once for the module (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("test_table_route")

EXAMPLES = Path(__file__).parent.parent / "examples" / "regmix"
TRAINER = Path(__file__).parent / "fixtures" / "simworld_trainer.py"
WORLD = [f"d{i:02d}" for i in range(5)]
TARGET = 32_000_000


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_regmix_from_the_authors_released_runs_ranks_their_held_out_runs(tmp_path, capsys):
    """The README's worked example: the objective the authors used (Pile-CC loss), their floor 0."""
    both = tmp_path / "heldout.csv"  # the 1M and the 1B held-out runs, scored in one call
    rows = [*read_rows(EXAMPLES / "heldout_1m.csv"), *read_rows(EXAMPLES / "heldout_1b.csv")]
    with both.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    scores, out = tmp_path / "scores.csv", tmp_path / "regmix.json"
    assert run_cli("fit", str(EXAMPLES / "train_1m.csv"), "--method", "regmix", "--metric", "loss",
                   "--eval-weights", "pile_cc=1", "--floor", "0", "--score", str(both), "--scores", str(scores),
                   "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "regmix mixture at 1B tokens" in printed and "pile_cc" in printed
    scored = read_rows(scores)
    assert len(scored) == 256 + 64 and list(scored[0])[: len(rows[0])] == list(rows[0])
    assert "predicted" in scored[0] and not any(k.startswith("predicted.") for k in scored[0])  # one regressor
    rho = {}
    for size, part in (("1m", scored[:256]), ("1b", scored[256:])):
        rho[size] = spearmanr([float(r["predicted"]) for r in part], [float(r["eval.pile_cc"]) for r in part]).statistic
    assert rho["1m"] >= 0.98 and rho["1b"] >= 0.95, rho
    mixture = json.loads(out.read_text())
    weights = mixture["weights"]
    assert len(weights) == 17 and sum(weights.values()) == pytest.approx(1.0)
    assert max(weights, key=weights.get) == "pile_cc"  # as in both of the authors' published mixtures
    assert mixture["method"] == "regmix" and mixture["cv_spearman"] > 0.9 and mixture["best_run"].startswith("n")


# -- the table route and the pipeline give the same mixture -----------------------------------------

SETTINGS = {
    "regmix": {"budget": 4_000_000, "runs": METHODS["regmix"].least_runs(5), "candidates": 5000, "top_k": 20},
    "dml": {"budget": 4_000_000, "runs": METHODS["dml"].least_runs(5)},
    "mixture-law": {"budgets": [1_000_000, 2_000_000, 4_000_000], "runs": METHODS["mixture-law"].least_runs(5),
                    "starts": 1},
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    """`autoscale run` with the three random-mixture methods in a world of 5 domains, through the
    command executor (the stand-in trainer in this process)."""
    from simworld_inprocess import simworld_in_process

    root = tmp_path_factory.mktemp("table-route")
    config = {
        "data": {"domains": WORLD, "fingerprint": "simworld-5"},
        "seed": 1,
        "methods": list(SETTINGS),
        **{METHODS[m].section: {**s, "prior": "uniform"} for m, s in SETTINGS.items()},
        "target": {"budget": TARGET},
        "executor": {
            "kind": "command",
            "command": [sys.executable, str(TRAINER), "--world-seed", "11", "--domains", ",".join(WORLD),
                        "--mixture", "{mixture_json}", "--seed", "{seed}", "--out", "{run_dir}"],
            "workers": 2, "trainer_id": "simworld-v1",
        },
    }
    path = root / "world.yaml"
    path.write_text(yaml.safe_dump(config))
    with simworld_in_process():
        assert run_cli("run", str(path), "--quiet") == 0
    return root / "world"


def settings_options(method: str) -> list[str]:
    """`plan`/`fit` options for the method's settings beyond the budget(s) and runs."""
    options = ["--prior", "uniform", "--seed", "1"]
    for key, value in SETTINGS[method].items():
        if key not in ("budget", "budgets", "runs"):
            options += ["--set", f"{key}={value}"]
    return options


@pytest.mark.parametrize("method", list(SETTINGS))
def test_plan_then_fit_gives_the_pipelines_mixture_on_the_same_runs(pipeline, tmp_path, method):
    s = SETTINGS[method]
    budget = (["--budgets", ",".join(str(b) for b in s["budgets"])] if "budgets" in s
              else ["--budget", str(s["budget"])])
    planned = tmp_path / "plan.csv"
    assert run_cli("plan", "--method", method, "--domains", ",".join(WORLD), *budget, "--runs", str(s["runs"]),
                   *settings_options(method), "--out", str(planned)) == 0
    # the pipeline's runs by the whole tokens they trained (the trainer's tokens_per_domain): plan wrote
    # the mixtures it trained; the filled table holds what they trained and scored, as a user's would
    trained = {}
    for path in sorted(pipeline.glob(f"{method}_runs_*.csv")):
        table = RunsTable.read_csv(path)
        trained |= {tuple(t): (t, e) for t, e in zip(table.tokens.tolist(), table.evals.tolist(), strict=True)}
    table = RunsTable.read_csv(planned)
    assert table.n_runs == s["runs"] * len(s.get("budgets", [0])) == len(trained)
    rows = [trained[tuple(np.round(t).tolist())] for t in table.tokens]
    RunsTable(table.runs, table.domains, np.array([t for t, _ in rows]), table.eval_names,
              np.array([e for _, e in rows]), table.seeds).to_csv(planned)
    out = tmp_path / "fit.json"
    assert run_cli("fit", str(planned), "--method", method, "--budget", str(TARGET), *settings_options(method),
                   "--json", "--out", str(out)) == 0
    ours = json.loads(out.read_text())["weights"]
    theirs = json.loads((pipeline / f"{method}_target.json").read_text())["mixture"]["weights"]
    assert list(ours) == WORLD and ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


def test_score_adds_the_fits_predictions_to_the_input_table(pipeline, tmp_path, capsys):
    """DML models each validation set: `predicted` and `predicted.<d>`, stdout without --scores."""
    source = next(pipeline.glob("dml_runs_*.csv"))
    assert run_cli("fit", str(source), "--method", "dml", "--score", str(source)) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = list(csv.DictReader(lines))
    assert len(rows) == SETTINGS["dml"]["runs"]
    assert list(rows[0])[-6:] == ["predicted", *(f"predicted.{d}" for d in WORLD)]
    for row in rows:  # the objective is the mean of the validation sets; the fit is close to the runs
        per_set = [float(row[f"predicted.{d}"]) for d in WORLD]
        assert float(row["predicted"]) == pytest.approx(np.mean(per_set), rel=1e-6)
        measured = np.mean([float(row[f"eval.{d}"]) for d in WORLD])
        assert float(row["predicted"]) == pytest.approx(measured, rel=0.05)


def test_ddo_scores_from_its_power_laws_and_names_what_it_extrapolates(tmp_path, capsys):
    """A filled DDO table (examples/ddo_gpt2_large_1.2B.csv): its own base run scores as measured,
    a mixture past the perturbations is named in `outside`."""
    runs = Path(__file__).parent.parent / "examples" / "ddo_gpt2_large_1.2B.csv"
    table = RunsTable.read_csv(runs)
    mixtures = tmp_path / "mixtures.csv"
    base = table.tokens[0]
    far = base.copy()
    far[0] *= 10  # 10x the base's tokens of the first domain: beyond x3
    with mixtures.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["name", *(f"tokens.{d}" for d in table.domains)])
        writer.writerow(["base", *base.tolist()])
        writer.writerow(["far", *far.tolist()])
    scores = tmp_path / "scores.csv"
    assert run_cli("fit", str(runs), "--score", str(mixtures), "--scores", str(scores)) == 0
    rows = read_rows(scores)
    objective = table.objective()
    base_rows = np.all(table.tokens == base, axis=1)
    assert float(rows[0]["predicted"]) == pytest.approx(objective[base_rows].mean(), rel=1e-6)
    assert rows[0]["outside"] == "" and rows[1]["outside"].startswith(f"{table.domains[0]} x10 > x")


# -- bad input ---------------------------------------------------------------------------------------


def small_table(root: Path, rows: int = 5, budget: float = 1e6, evals: bool = True, domains=("a", "b", "c")) -> Path:
    """A filled random-mixture table of ``rows`` runs over 3 domains (DML needs m + 2 = 5)."""
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(len(domains)), size=rows)
    path = root / f"runs_{rows}_{budget:g}_{''.join(domains)}{'' if evals else '_noeval'}.csv"
    losses = 3.0 + w @ rng.uniform(0.5, 1.5, (len(domains), len(domains)))
    table = RunsTable(tuple(f"r{i}" for i in range(rows)), tuple(domains), w * budget,
                      tuple(domains) if evals else (), losses if evals else np.empty((rows, 0)))
    table.to_csv(path)
    return path


def edited(path: Path, row: int, column: str, value: str) -> Path:
    rows = read_rows(path)
    rows[row][column] = value
    out = path.with_name(f"edited_{row}_{column}_{value}_{path.name}")
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out


def bad_inputs(root: Path) -> dict[str, tuple[list[str], str]]:
    good = small_table(root)
    no_tokens = root / "no_tokens.csv"
    no_tokens.write_text("run,eval.a\nr0,3.1\n")
    two_budgets = root / "two_budgets.csv"
    first, second = read_rows(small_table(root)), read_rows(small_table(root, budget=8e6))
    with two_budgets.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(first[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(first + second)
    narrow = root / "narrow.csv"
    parts = [read_rows(small_table(root, budget=b)) for b in (1e6, 1.5e6, 2.5e6)]
    with narrow.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(parts[0][0]), lineterminator="\n")
        writer.writeheader()
        for part in parts:
            writer.writerows(part)
    other = small_table(root, domains=("a", "b", "x"))
    dml = ["--method", "dml"]
    return {
        "no tokens columns": (["fit", str(no_tokens), *dml], "no tokens.<domain> columns"),
        "no eval columns": (["fit", str(small_table(root, evals=False)), *dml], "no eval.<name> columns"),
        "a row with no tokens": (["fit", str(edited(edited(edited(good, 1, "tokens.a", "0"), 1, "tokens.b", "0"),
                                                    1, "tokens.c", "0")), *dml], "run 'r1' has no tokens"),
        "a negative tokens cell": (["fit", str(edited(good, 2, "tokens.b", "-5")), *dml], "tokens.b is negative"),
        "an infinite eval cell": (["fit", str(edited(good, 2, "eval.a", "inf")), *dml], "eval.a is infinite"),
        "a negative eval cell": (["fit", str(edited(good, 2, "eval.a", "-1")), *dml], "eval.a must be a finite number"),
        "an empty eval cell": (["fit", str(edited(good, 3, "eval.c", "")), *dml], "eval.c must be a finite number"),
        "too few runs": (["fit", str(small_table(root, rows=4)), *dml], "4 runs at 1e+06 tokens for 3 domains; it "
                                                                         "needs at least 5"),
        "mixture law at 2 budgets": (["fit", str(two_budgets), "--method", "mixture-law"], "budgets"),
        "mixture law spanning 2.5x": (["fit", str(narrow), "--method", "mixture-law"], "span 4x"),
        "score with other domains": (["fit", str(good), *dml, "--score", str(other)], "are not the fit's"),
        "unknown method": (["fit", str(good), "--method", "lasso"], "--method: unknown method 'lasso'"),
        "plan with an unknown method": (["plan", "--method", "doremi", "--domains", "a,b"], "trains its own runs"),
        "floor x m >= 1": (["fit", str(good), *dml, "--floor", "0.34"], "floor 0.34 x 3 domains >= 1"),
        "scores into a missing folder": (["fit", str(good), *dml, "--score", str(good), "--scores",
                                          str(root / "missing" / "s.csv")], "--scores: folder"),
        "a DDO option with dml": (["fit", str(good), *dml, "--min-ratio", "0.1"], "--min-ratio does not apply"),
        "a search option with ddo": (["fit", str(good), "--floor", "0.1"], "--floor does not apply to --method ddo"),
    }


@pytest.mark.parametrize("case", [
    "no tokens columns", "no eval columns", "a row with no tokens", "a negative tokens cell", "an infinite eval cell",
    "a negative eval cell", "an empty eval cell", "too few runs", "mixture law at 2 budgets",
    "mixture law spanning 2.5x", "score with other domains", "unknown method", "plan with an unknown method",
    "floor x m >= 1", "scores into a missing folder", "a DDO option with dml", "a search option with ddo",
])
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, capfd, case):
    args, message = bad_inputs(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    out = tmp_path / "out.json"
    assert run_cli(*args, "--out", str(out)) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written, --out included
