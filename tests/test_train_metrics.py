"""metrics.json, as an external trainer would write it: what is accepted, and the one-line errors."""

from __future__ import annotations

import json
import math

import pytest

from autoscale.errors import AutoscaleError
from autoscale.train.metrics import RunMetrics, read_metrics, write_metrics

MINIMAL = {"schema_version": 1, "status": "completed", "final": {"web": {"loss": 3.0}, "code": {"perplexity": 8.0}}}


def test_minimal_external_metrics_are_completed_with_derived_values(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(MINIMAL))
    m = read_metrics(path)
    assert m.usable and m.curve == () and m.tokens_per_domain == {}
    assert m.perplexities["web"] == pytest.approx(math.exp(3.0))
    assert m.losses["code"] == pytest.approx(math.log(8.0))


def test_round_trip_keeps_curve_and_extra_keys(tmp_path):
    data = {
        **MINIMAL,
        "curve": [
            {"step": 0, "tokens": 0, "eval": {"web": {"loss": 6.0, "perplexity": 403.4}}},
            {"step": 10, "tokens": 5120, "eval": {"web": {"loss": 4.0, "perplexity": 54.6}}, "train_loss": 4.2},
        ],
        "tokens_per_domain": {"web": 5120}, "mixture": {"web": 5000.0}, "tokens_per_s": 1e4, "params": 1000,
        "wall_time_s": 1.5, "trainer": "my-megatron",
    }
    m = RunMetrics.from_dict(data)
    assert m.curve[1].train_loss == 4.2 and m.extra == {"trainer": "my-megatron"}
    write_metrics(m, tmp_path / "m.json")
    again = read_metrics(tmp_path / "m.json")
    assert again == m
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temporary file left behind


def test_diverged_run_is_never_usable():
    m = RunMetrics.from_dict({"schema_version": 1, "status": "diverged", "diverged_at_step": 12, "final": {}})
    assert not m.usable and m.diverged_at_step == 12


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 2}, "schema_version 2 is not supported"),
        ({"status": "done"}, "status must be one of completed, diverged"),
        ({"final": {}}, "needs at least one domain in 'final'"),
        ({"final": {"web": {"loss": "low"}}}, r"final\['web'\].loss must be a number"),
        ({"final": {"web": {"loss": float("nan")}}}, r"final\['web'\].loss must be finite"),
        ({"final": {"web": {"perplexity": 0.5}}}, r"final\['web'\].perplexity must be finite and >= 1"),
        ({"final": {"web": {"acc": 0.5}}}, r"final\['web'\] must be an object with 'loss'"),
        ({"final": [3.0]}, "final must be an object of domain"),
        ({"curve": [{"step": 5, "eval": {}}, {"step": 5, "eval": {}}]}, r"curve\[1\].step must be greater"),
        ({"curve": [{"step": -1, "eval": {}}]}, r"curve\[0\].step must be a non-negative integer"),
        ({"tokens_per_domain": {"web": 1.5}}, r"tokens_per_domain\['web'\] must be a non-negative integer"),
        ({"diverged_at_step": "x"}, "diverged_at_step must be a non-negative integer"),
    ],
)
def test_invalid_metrics_name_the_key_in_one_line(change, message):
    with pytest.raises(AutoscaleError, match=message) as err:
        RunMetrics.from_dict({**MINIMAL, **change}, "run7/metrics.json")
    assert str(err.value).startswith("run7/metrics.json: ") and "\n" not in str(err.value)


def test_missing_required_keys_and_unreadable_files(tmp_path):
    with pytest.raises(AutoscaleError, match="missing required key 'final'"):
        RunMetrics.from_dict({"schema_version": 1, "status": "completed"})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(AutoscaleError, match="malformed JSON"):
        read_metrics(tmp_path / "bad.json")
    with pytest.raises(AutoscaleError, match="does not exist"):
        read_metrics(tmp_path / "none.json")


def _check(capsys, path) -> tuple[int, list[str], list[str]]:
    from autoscale.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["check", str(path)])
    out, err = capsys.readouterr()
    return exit_.value.code, out.splitlines(), err.splitlines()


def test_check_names_every_problem_of_a_trainers_metrics(tmp_path, capsys):
    bad = {"schema_version": 2, "status": "done", "final": {"web": {"loss": -1}, "code": {"perplexity": 0.5}},
           "curve": [{"step": 5, "eval": {}}, {"step": 3, "eval": {}}, {"nope": 1}], "params": -3}
    (tmp_path / "metrics.json").write_text(json.dumps(bad))
    code, out, err = _check(capsys, tmp_path)
    source = str(tmp_path / "metrics.json")
    assert code == 2 and out == []
    assert err == [f"error: {source}: {problem}" for problem in (
        "schema_version 2 is not supported (expected 1)", "status must be one of completed, diverged, got 'done'",
        "final['web'].loss must be finite and >= 0, got -1", "final['code'].perplexity must be finite and >= 1, got 0.5",
        "curve[1].step must be greater than the previous point's step",
        "curve[2] must be an object with 'step' and 'eval'", "params must be a non-negative integer, got -3")]
    # the first of them is what a run reading it fails with
    with pytest.raises(AutoscaleError, match="schema_version 2 is not supported"):
        read_metrics(tmp_path / "metrics.json")


def test_check_passes_valid_metrics_and_says_what_they_hold(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text(json.dumps(MINIMAL))
    code, out, err = _check(capsys, tmp_path / "metrics.json")
    assert (code, err) == (0, [])
    assert out == [f"ok: {tmp_path / 'metrics.json'}: completed, final on web, code; no curve (no speed-ups from it)"]
    (tmp_path / "metrics.json").write_text('{"schema_version": 1,')
    code, _, err = _check(capsys, tmp_path)
    assert code == 2 and len(err) == 1 and "malformed JSON" in err[0]
    code, _, err = _check(capsys, tmp_path / "elsewhere")
    assert code == 2 and len(err) == 1 and "does not exist" in err[0]
