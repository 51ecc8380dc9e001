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
