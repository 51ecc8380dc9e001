"""The report: speed-ups from validation curves, the three plots, and one self-contained HTML page."""

import base64
import io
import re

import matplotlib.image
import numpy as np
import pytest

from autoscale.errors import AutoscaleError
from autoscale.report.html import PLOTS, render_html, write_report
from autoscale.report.plots import plot_fits, plot_validation, plot_weights_vs_budget
from autoscale.report.results import (
    CurveFit,
    ReportData,
    ValidationCurve,
    WeightsAtBudget,
    speedup,
)

DOMAINS = ("web", "code", "books", "wiki")
TOKENS = tuple(float(t) for t in np.linspace(1e5, 1e6, 10))


def curve(name, offset):
    """A loss curve that falls as tokens^-0.5, shifted up by ``offset`` (worse mixture)."""
    y = tuple(2.0 + 300.0 / np.sqrt(t) + offset for t in TOKENS)
    return ValidationCurve(name, TOKENS, y, y[-1])


def fit(label, a, b, x=(0.2, 1.0, 3.0)):
    c = 1.0 - (1.0 + a) ** -b  # y(1) = 1, as DDO normalises
    y = tuple((xi + a) ** -b + c for xi in x)
    return CurveFit(label, a, b, c, x, y, optimum=1.3)


def example_data():
    return ReportData(
        title="test report <&>",
        domains=DOMAINS,
        mixtures=(
            WeightsAtBudget("DDO", 1e5, dict(zip(DOMAINS, (0.4, 0.3, 0.2, 0.1), strict=True))),
            WeightsAtBudget("DDO", 4e5, dict(zip(DOMAINS, (0.5, 0.2, 0.2, 0.1), strict=True)),
                            intervals={d: (w - 0.05, w + 0.04) for d, w in zip(DOMAINS, (0.5, 0.2, 0.2, 0.1),
                                                                                strict=True)}, held=(DOMAINS[3],)),
            WeightsAtBudget("predicted", 1.6e6, dict(zip(DOMAINS, (0.6, 0.1, 0.2, 0.1), strict=True)), measured=False,
                            intervals={d: (w - 0.08, w + 0.07) for d, w in zip(DOMAINS, (0.6, 0.1, 0.2, 0.1),
                                                                                strict=True)}, held=(DOMAINS[3],)),
        ),
        fits={lab: {d: fit(lab, 1.0 + i, 0.5 + 0.3 * i) for i, d in enumerate(DOMAINS)} for lab in ("100k", "400k")},
        validation=(curve("predicted", 0.0), curve("uniform", 0.05), curve("natural", 0.02)),
        objective_label="mean validation loss",
        notes=("fit warning: wiki pinned at the floor",),
    )


def decode(png: bytes) -> np.ndarray:
    return matplotlib.image.imread(io.BytesIO(png), format="png")


def test_speedup_is_share_of_baseline_tokens_saved():
    # predicted falls linearly 10 -> 0 over 10 tokens; the baseline ends at 4 after 10 tokens,
    # so the predicted mixture gets there after 6 tokens: 40% of the baseline's tokens saved
    pred = ValidationCurve("pred", (0, 5, 10), (10, 5, 0), 0)
    base = ValidationCurve("base", (0, 5, 10), (10, 7, 4), 4)
    up = speedup(pred, base)
    assert up.steps_to_reach == pytest.approx(6.0)
    assert up.speedup == pytest.approx(0.4)


def test_speedup_not_reached_is_none():
    up = speedup(curve("pred", 0.1), curve("base", 0.0))
    assert up.speedup is None and up.steps_to_reach is None


def test_report_data_speedups_against_every_baseline():
    data = example_data()
    ups = {u.baseline: u.speedup for u in data.speedups()}
    assert set(ups) == {"uniform", "natural"}
    # a worse baseline (higher curve) is reached sooner: larger speed-up
    assert ups["uniform"] > ups["natural"] > 0


def test_plots_are_pngs_of_fixed_size():
    data = example_data()
    a = decode(plot_weights_vs_budget(data.mixtures, DOMAINS))
    b = decode(plot_weights_vs_budget(data.mixtures, DOMAINS))
    assert a.shape == b.shape and a.shape[0] > 200 and a.shape[1] > 300
    fits = decode(plot_fits(data.fits, DOMAINS))
    assert fits.shape[1] > fits.shape[0]  # 4 panels in a row
    val = decode(plot_validation(data.validation, "predicted", "loss"))
    assert val.ndim == 3 and val.shape[0] > 200
    # not a blank canvas
    assert val[..., :3].std() > 0.05


def test_plots_refuse_empty_input():
    with pytest.raises(AutoscaleError, match="no mixtures"):
        plot_weights_vs_budget([])
    with pytest.raises(AutoscaleError, match="no fitted curves"):
        plot_fits({})
    with pytest.raises(AutoscaleError, match="no validation curves"):
        plot_validation([], "predicted")


def test_html_is_self_contained_and_every_image_decodes(tmp_path):
    files = write_report(example_data(), tmp_path / "report")
    page = files.html.read_text()
    assert sorted(p.name for p in files.images) == sorted(PLOTS)
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 4
    for src in sources:
        assert src.startswith("data:image/png;base64,")  # nothing to fetch: the page is self-contained
        image = decode(base64.b64decode(src.split(",", 1)[1]))
        assert image.shape[0] > 100 and image.shape[1] > 100
    # the tables: mixtures at each budget, the predicted mixture, the validated results
    assert "DDO @ 400k" in page and "predicted @ 1.6M (predicted)" in page
    assert "60.0%" in page  # predicted weight of web
    assert '60.0% <span class="ci">(52.0-67.0)</span>' in page  # with its interval
    assert page.count("<i>held</i>") == 3  # two in the mixtures table, one in the predicted table
    assert "test report &lt;&amp;&gt;" in page  # user text is escaped
    speedups = re.findall(r'class="good">\+(\d+\.\d)%', page)
    assert len(speedups) == 2
    assert not list(tmp_path.glob("report/.*"))  # no temporary files left behind


def test_html_without_validation_still_renders():
    data = example_data()
    partial = ReportData(data.title, data.domains, data.mixtures, data.fits)
    page = render_html(partial, {})
    assert "Validation at the target budget" not in page
    assert "Predicted target mixture" in page
