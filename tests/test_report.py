"""The report: speed-ups as the validation record holds them, the three plots, and one self-contained
HTML page."""

import base64
import dataclasses
import io
import re

import matplotlib.image
import numpy as np
import pytest

from autoscale.errors import AutoscaleError
from autoscale.experiment.records import ValidationRecord, parse
from autoscale.report import plots
from autoscale.report.html import PLOTS, render_html, write_report
from autoscale.report.load import _speedups
from autoscale.report.plots import plot_fits, plot_validation, plot_weights_vs_budget
from autoscale.report.results import (
    CurveFit,
    RecordedSpeedUp,
    ReportData,
    ValidationCurve,
    WeightsAtBudget,
)
from autoscale.speedup import speedup

DOMAINS = ("web", "code", "books", "wiki")
# the first evaluation is before training (0 tokens), as the trainer reports it
TOKENS = (0.0,) + tuple(float(t) for t in np.linspace(1e5, 1e6, 10))
VOCAB = 257.0  # perplexity before training: about the vocabulary size


def curve(name, offset):
    """A perplexity curve that falls as tokens^-0.5 after VOCAB at the start, shifted up by ``offset``
    (worse mixture)."""
    y = (VOCAB,) + tuple(2.0 + 300.0 / np.sqrt(t) + offset for t in TOKENS[1:])
    finals = {d: 2.0 + offset + 0.1 * i for i, d in enumerate(DOMAINS)}
    return ValidationCurve(name, TOKENS, y, y[-1], domain_finals=finals)


def fit(label, a, b, x=(0.2, 1.0, 3.0), base_tokens=None):
    c = 1.0 - (1.0 + a) ** -b  # y(1) = 1, as DDO normalises
    y = tuple((xi + a) ** -b + c for xi in x)
    return CurveFit(label, a, b, c, x, y, optimum=1.3, base_tokens=base_tokens)


def recorded(baseline, offset, seeds=(0,)):
    """The predicted curve's speed-up over a baseline ``offset`` worse, as the pipeline records it per seed."""
    ups = [(seed, speedup((TOKENS, curve("predicted", 0.0).objective), (TOKENS, curve(baseline, offset).objective),
                          smoothing=0.0, names=("predicted", baseline))) for seed in seeds]
    return RecordedSpeedUp(baseline, float(np.mean([u.speedup for _, u in ups])), tuple(ups))


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
        fits={lab: {d: fit(lab, 1.0 + i, 0.5 + 0.3 * i, base_tokens=budget / 4) for i, d in enumerate(DOMAINS)}
              for lab, budget in (("100k", 1e5), ("400k", 4e5))},
        validation=(curve("predicted", 0.0), curve("uniform", 0.05), curve("natural", 0.02)),
        speedups=tuple(recorded(b, offset) for b, offset in (("uniform", 0.05), ("natural", 0.02))),
        gains={"uniform": {"baseline": "uniform", "mean": 0.031, "interval": [0.012, 0.05], "seeds": 3,
                           "verdict": "win"},
               "natural": {"baseline": "natural", "mean": 0.004, "interval": [-0.01, 0.018], "seeds": 3,
                           "verdict": "not distinguishable"}},
        featured="predicted",
        objective_label="mean validation loss",
        notes=("fit warning: wiki pinned at the floor",),
    )


def decode(png: bytes) -> np.ndarray:
    return matplotlib.image.imread(io.BytesIO(png), format="png")


def test_speedups_are_read_from_the_validation_record_not_recomputed(tmp_path):
    # per-seed speed-ups as the pipeline writes them; the mean is the record's, whatever the curves say
    per_seed = [{"method": "predicted", "baseline": "uniform", "speedup": s, "tokens_to_reach": t,
                 "baseline_tokens": 1e6, "baseline_final": 3.0, "method_final": 2.9, "smoothing": "none", "seed": seed}
                for seed, s, t in ((0, 0.2, 8e5), (1, 0.3, 7e5))]
    other = dict(per_seed[0], method="regmix")  # another method's: not the predicted mixture's
    validation = parse(ValidationRecord, {"mixtures": {}, "runs": {}, "speedups": [*per_seed, other],
                                          "speedup_means": {"predicted": {"uniform": 0.25, "natural": None}}}, "v")
    ups = {u.baseline: u for u in _speedups(validation, "predicted")}
    assert ups["uniform"].mean == 0.25 and ups["natural"].mean is None
    assert [seed for seed, _ in ups["uniform"].seeds] == [0, 1]
    assert ups["uniform"].mean_of("tokens_to_reach") == pytest.approx(7.5e5)
    # a record of the single-method days: speedup_mean only
    old = _speedups(parse(ValidationRecord, {"mixtures": {}, "runs": {}, "speedup_mean": {"uniform": 0.1}}, "v"),
                    "predicted")
    assert [(u.baseline, u.mean, u.seeds) for u in old] == [("uniform", 0.1, ())]
    # the page shows the recorded numbers: 25.0% here, though the example curves would give another figure
    data = dataclasses.replace(example_data(), speedups=tuple(ups.values()))
    page = render_html(data, {})
    # two seeds: the mean and its 95% t interval, not coloured, since the interval holds 0
    assert "<td>+25.0% [-38.5%, +88.5%]</td>" in page and "800k / 700k" in page
    assert "<td>not reached</td>" in page
    sure = dataclasses.replace(ups["uniform"], seeds=tuple((s, dataclasses.replace(u, speedup=v)) for (s, u), v
                                                           in zip(ups["uniform"].seeds, (0.24, 0.26), strict=True)))
    page = render_html(dataclasses.replace(data, speedups=(sure,)), {})
    assert '<span class="good">+25.0% [+12.3%, +37.7%]</span>' in page  # an interval above 0: green


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
    assert sorted(p.name for p in files.images) == sorted(set(PLOTS) - {"methods.png"})  # one method: no comparison
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 4
    for src in sources:
        assert src.startswith("data:image/png;base64,")  # nothing to fetch: the page is self-contained
        image = decode(base64.b64decode(src.split(",", 1)[1]))
        assert image.shape[0] > 100 and image.shape[1] > 100
    # the tables: mixtures at each budget, the predicted mixture, the validated results
    assert "DDO @ 400k" in page and "predicted @ 1.6M (predicted)" in page
    assert "60.0%" in page  # predicted weight of web
    assert '<span class="good">+3.1% [+1.2%, +5.0%], 3 seeds: win</span>' in page  # gain with its verdict
    assert "+0.4% [-1.0%, +1.8%], 3 seeds: not distinguishable" in page
    assert '60.0% <span class="ci">(52.0-67.0)</span>' in page  # with its interval
    assert page.count(">held</i>") == 3  # two in the mixtures table, one in the predicted table
    assert ">forced</i>" not in page  # three domains stay free
    assert "test report &lt;&amp;&gt;" in page  # user text is escaped
    speedups = re.findall(r'<td>\+(\d+\.\d)%, 1 seed</td>', page)  # one seed each: no interval, no colour
    assert len(speedups) == 2
    assert not list(tmp_path.glob("report/.*"))  # no temporary files left behind


def test_html_without_validation_still_renders():
    data = example_data()
    partial = ReportData(data.title, data.domains, data.mixtures, data.fits)
    page = render_html(partial, {})
    assert "Validation at the target budget" not in page
    assert "Predicted target mixture" in page


def drawn_figures(monkeypatch):
    """The matplotlib figures the plot functions draw, instead of their PNG bytes."""
    figures = []
    monkeypatch.setattr(plots, "_png", lambda fig: figures.append(fig) or b"")
    return figures


def test_validation_plot_draws_the_measured_points_with_lines_on_them(monkeypatch):
    # smoothing as the pipeline's default; the first point (before training) is 100x the final value
    data = dataclasses.replace(example_data(), smoothing=0.6)
    figures = drawn_figures(monkeypatch)
    plot_validation(data.validation, data.featured, "perplexity", data.smoothing)
    [ax] = figures[0].axes
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    for c in data.validation:
        assert f"{c.name} (final {c.final:.4g})" in legend  # the measured final value, mean over seeds
        [line] = [ln for ln in ax.get_lines() if ln.get_label().startswith(f"{c.name} (final")]
        [points] = [ln for ln in ax.get_lines() if ln.get_linestyle() == "None"
                    and list(ln.get_xdata()) == list(c.tokens) and list(ln.get_ydata()) == list(c.objective)]
        assert points.get_marker() not in (None, "None", "")  # every measured point is drawn, step 0 too
        x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
        measured = np.asarray(c.objective)[1:]
        assert x.tolist() == list(c.tokens[1:])  # the evaluation before training is not part of the line
        assert np.max(np.abs(y / measured - 1)) < 0.05  # the line passes by the points...
        assert y[-1] == pytest.approx(c.final, rel=0.01)  # ...and ends at the final value the legend gives


def test_fit_plot_shows_absolute_tokens(monkeypatch):
    data = example_data()
    figures = drawn_figures(monkeypatch)
    plot_fits(data.fits, DOMAINS)
    ax = figures[0].axes[0]
    lo, hi = ax.get_xlim()
    # the points of 100k (base 25k tokens of web) and 400k (base 100k): 0.2 x 25k = 5k to 3 x 100k = 300k
    assert lo < 5e3 and 3e5 < hi < 1e6
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert "10k" in labels and "100k" in labels
    assert ax.get_xlabel() == "tokens of this domain"
    optima = sorted(ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_linestyle() == ":")
    assert optima == pytest.approx([1.3 * 25e3, 1.3 * 100e3])  # the chosen amount, in tokens


def test_plot_labels_are_never_parsed_as_math(tmp_path):
    # "$x$" would be set in italics without its dollars; "$\\unknown$" makes mathtext raise
    names = ("$x$ & co", "cost $\\unknown$", "books")
    base = example_data()
    weights = dict(zip(names, (0.5, 0.3, 0.2), strict=True))
    data = dataclasses.replace(
        base, domains=names,
        mixtures=(WeightsAtBudget("DDO", 1e5, weights, intervals={d: (w - 0.05, w + 0.05) for d, w in weights.items()}),
                  WeightsAtBudget("predicted", 1.6e6, weights, measured=False)),
        fits={"100k": {d: fit("100k", 1.0 + i, 0.5, base_tokens=2e4) for i, d in enumerate(names)}},
        validation=(curve("predicted", 0.0), curve("$\\sqrt{$", 0.05)),
    )
    files = write_report(data, tmp_path / "report")
    assert sorted(p.name for p in files.images) == sorted(set(PLOTS) - {"methods.png"})  # one method: no comparison
    assert "$x$ &amp; co" in files.html.read_text()


def test_fit_table_has_r2_residuals_and_tokens():
    data = example_data()
    exact = data.fits["400k"]["web"]  # two replicates at each amount, each off the curve by its residual
    residuals = (0.01, -0.01, 0.002, -0.002, 0.0, 0.0)
    noisy = dataclasses.replace(exact, x=(0.2, 0.2, 1.0, 1.0, 3.0, 3.0), r2=0.9731, residuals=residuals,
                                y=tuple(y + r for y, r in zip(np.repeat(exact.y, 2), residuals, strict=True)))
    data = dataclasses.replace(data, fits={**data.fits, "400k": {**data.fits["400k"], "web": noisy}})
    page = render_html(data, {})
    row = re.search(r"<tr><td class=\"name\">web</td><td>400k</td>(.*?)</tr>", page).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    # a, b, c, points, R², RMS residual, max |residual|, base tokens, chosen x, chosen tokens
    assert cells[3:] == ["6", "0.973", "0.59%", "1.00%", "100k", "1.3", "130k"]
    unknown = re.search(r"<tr><td class=\"name\">web</td><td>100k</td>(.*?)</tr>", page).group(1)
    assert re.findall(r"<td>(.*?)</td>", unknown)[3:7] == ["3", "-", "-", "-"]  # no residuals recorded

    # 3 points: through them ('exact', R² would say nothing), or the least-squares curve and how far off it is
    through = dataclasses.replace(data.fits["100k"]["web"], residuals=(0.0, 0.0, 0.0))
    y = (1.05, 1.0, 0.8)  # falls faster from 1 to 3 than from 0.2 to 1: no decreasing convex curve fits
    missed = dataclasses.replace(data.fits["100k"]["code"], y=y, residuals=(0.01, -0.02, 0.01))
    data = dataclasses.replace(data, fits={**data.fits, "100k": {**data.fits["100k"], "web": through, "code": missed}})
    page = render_html(data, {})
    cells = {d: re.findall(r"<td>(.*?)</td>", re.search(rf'<tr><td class="name">{d}</td><td>100k</td>(.*?)</tr>',
                                                         page).group(1)) for d in ("web", "code")}
    assert cells["web"][4:6] == ["exact", "0.00%"]
    r2 = 1 - (0.01**2 * 2 + 0.02**2) / float(np.sum((np.array(y) - np.mean(y)) ** 2))
    assert cells["code"][4:6] == [f"{r2:.3f}", "1.41%"]


def test_html_has_final_perplexity_per_validation_domain():
    page = render_html(example_data(), {})
    assert "Final validation perplexity per validation domain" in page
    table = page.split("Final validation perplexity per validation domain")[1].split("</table>")[0]
    assert re.findall(r'<th>(\w+)</th>', table) == list(DOMAINS)
    uniform = re.search(r'<td class="name">uniform</td>(.*?)</tr>', table).group(1)
    assert re.findall(r"<td>(.*?)</td>", uniform) == ["2.05", "2.15", "2.25", "2.35"]
    predicted = re.search(r'<tr class="featured"><td class="name">predicted</td>(.*?)</tr>', table).group(1)
    assert '<span class="good">2</span>' in predicted  # the lowest of its domain


# -- the experiment folder: malformed files are one line naming the file ----------------------------


# its tests share `finished_experiment`: built once, on one worker (tests/conftest.py)
pytestmark = pytest.mark.xdist_group("test_report")


@pytest.fixture(scope="module")
def finished_experiment(tmp_path_factory):
    """A tiny experiment run end to end (stand-in trainer): every file the report reads."""
    from cli_helpers import run_cli, tiny_experiment
    from simworld_inprocess import simworld_in_process

    root = tmp_path_factory.mktemp("report-files")
    with simworld_in_process():
        assert run_cli("run", str(tiny_experiment(root, "tiny")), "--quiet") == 0
    return root / "tiny"


@pytest.mark.parametrize("content", ["[]", "{}", '{"runs": 5}'])
@pytest.mark.parametrize("name", ["autoscale_1000000.json", "autoscale_target.json", "validation.json", "experiment.json"])
def test_report_names_a_malformed_file_and_its_problem(finished_experiment, tmp_path, capsys, name, content):
    import shutil

    from cli_helpers import run_cli

    folder = tmp_path / "experiment"
    shutil.copytree(finished_experiment, folder)
    (folder / name).write_text(content)
    assert run_cli("report", str(folder), "--out", str(tmp_path / "report")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {str(folder / name)!r}: ") and err.count("\n") == 1, err
    problem = err.split(": ", 2)[2]
    assert problem.startswith(("expected a JSON object, got a list", "missing field", "field 'runs' must be")), err
    assert not (tmp_path / "report").exists()


def test_report_of_the_intact_folder_and_deeper_problems(finished_experiment, tmp_path, capsys):
    import json
    import shutil

    from cli_helpers import run_cli

    folder = tmp_path / "experiment"
    shutil.copytree(finished_experiment, folder)
    assert run_cli("report", str(folder), "--out", str(tmp_path / "report")) == 0  # the control
    capsys.readouterr()
    cases = {
        "autoscale_target.json": ({"mixture": {"tokens": {"web": 1e308, "code": 1e308}}}, "a mixture's total must be finite"),
        "autoscale_4000000.json": ({"budget": 4e6, "mixture": {"tokens": {"web": 1, "code": 2}}, "fits": {"web": 5}},
                             "field 'fits.web' must be a valid dictionary, got a number"),
        "validation.json": ({"runs": {"predicted": [5]}, "mixtures": {}},
                            "field 'runs.predicted.0' must be a valid dictionary, got a number"),
        "experiment.json": ({"config": {"ddo": {"budgets": ["many"]}}, "domains": ["web"]},
                            "field 'config.ddo.budgets.0' must be a valid number, got a string"),
        "summary.json": ({"schema_version": 2, "domains": ["web"], "methods": {"autoscale": {
            "mixture": "predicted", "weights": {"web": 1.0}, "target_budget": "big", "search_runs": 1,
            "search_tokens": 1, "search_vs_target": 1}}},
            "field 'methods.autoscale.target_budget' must be a valid number, got a string"),
    }
    for name, (record, message) in cases.items():
        original = (folder / name).read_text()
        (folder / name).write_text(json.dumps(record))
        assert run_cli("report", str(folder), "--out", str(tmp_path / "report")) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {str(folder / name)!r}: ") and err.count("\n") == 1 and message in err, err
        (folder / name).write_text(original)


def test_the_page_opens_with_the_answer_before_any_warning():
    page = render_html(example_data(), {})
    answer = re.search(r'<div class="answer">(.*?)</div>', page, re.S)
    assert answer and page.index('class="answer"') < page.index('class="notes"') < page.index("<h2>")
    text = answer.group(1)
    # the mixture at the target, with the held domain said, then each verdict with its interval
    assert "<b>predicted</b> at 1.6M tokens: web 60.0%, code 10.0%, books 20.0%, wiki 10.0% (held at the base: wiki)" in text
    assert 'predicted against uniform: <span class="good">+3.1% [+1.2%, +5.0%], 3 seeds: win</span>' in text
    assert "predicted against natural: <span class=\"\">+0.4% [-1.0%, +1.8%], 3 seeds: not distinguishable" in text
    data = example_data()
    unvalidated = render_html(ReportData(data.title, data.domains, data.mixtures, data.fits), {})
    assert "Not validated at the target" in re.search(r'<div class="answer">(.*?)</div>', unvalidated, re.S).group(1)


def test_validation_curves_show_the_seeds_range_as_a_band(monkeypatch):
    c = curve("uniform", 0.05)
    low, high = tuple(v - 0.3 for v in c.objective), tuple(v + 0.2 for v in c.objective)
    banded = dataclasses.replace(c, spread=(low, high))
    figures = drawn_figures(monkeypatch)
    plot_validation([curve("predicted", 0.0), banded], "predicted")
    [ax] = figures[0].axes
    [band] = ax.collections  # one band: the predicted curve here has one seed
    ys = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
    assert ys.min() == pytest.approx(min(low)) and ys.max() == pytest.approx(max(high))


def test_the_plot_says_tokens_saved_and_how_much_faster_that_is(monkeypatch):
    from autoscale.speedup import as_tokens_saved

    assert as_tokens_saved(0.5) == "50% fewer tokens (2.0x faster)"  # half the tokens: twice as fast
    assert as_tokens_saved(-0.25) == "25% more tokens (0.80x)"
    data = example_data()
    figures = drawn_figures(monkeypatch)
    plot_validation(data.validation, data.featured, speedups=data.speedups)
    [ax] = figures[0].axes
    box = next(t.get_text() for t in ax.texts if "reaches each final value" in t.get_text())
    u = next(u for u in data.speedups if u.baseline == "uniform")
    assert f"vs uniform: {as_tokens_saved(u.mean)}" in box and "x faster" in box


def test_the_one_domain_left_free_by_holds_is_marked_forced():
    data = example_data()
    w = dict(zip(DOMAINS, (0.25, 0.25, 0.25, 0.25), strict=True))
    forced = WeightsAtBudget("predicted", 1.6e6, w, measured=False, intervals={d: (0.25, 0.25) for d in DOMAINS},
                             held=DOMAINS[1:])
    page = render_html(dataclasses.replace(data, mixtures=(forced,)), {})
    assert page.count(">held</i>") == 3 * 2 and page.count(">forced</i>") == 2  # both weight tables
    assert '25.0% <span class="ci">(25.0-25.0)</span> <i title="the other domains are held' in page


def test_the_fit_plot_marks_a_domain_held_at_a_budget(monkeypatch):
    data = example_data()
    figures = drawn_figures(monkeypatch)
    plot_fits(data.fits, data.domains, {"400k": ("wiki",)})
    titles = {ax.get_title(): ax for ax in figures[0].axes if ax.get_visible()}
    assert "wiki (held at 400k)" in titles and "web" in titles
    lines = {ln.get_label(): ln.get_linestyle() for ln in titles["wiki (held at 400k)"].get_lines()
             if not ln.get_label().startswith("_")}
    assert lines["400k (held)"] == "--" and lines["100k"] == "-"
