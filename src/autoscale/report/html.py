"""One self-contained HTML page: the plots as base64 data URIs plus the tables.

`render_html` is pure (values in, text out); `write_report` draws the plots and writes
``report.html`` and the PNGs into a folder, each through a temporary name and a rename so an
interrupted run never leaves a half-written page.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoscale.atomic import write_bytes_atomic
from autoscale.baselines import BASELINES
from autoscale.errors import AutoscaleError
from autoscale.gain import t_interval
from autoscale.report.plots import (
    plot_fits,
    plot_methods,
    plot_validation,
    plot_weight_intervals,
    plot_weights_vs_budget,
)
from autoscale.report.results import RecordedSpeedUp, ReportData
from autoscale.tokens import format_tokens

#: file name -> caption, in page order
PLOTS = {
    "methods.png": "Each mixing method's gain over uniform at the target (mean over the validation seeds, bar: "
    "its 95% interval) against the compute of its search, in multiples of one target run.",
    "weights_vs_budget.png": "Optimal weights per domain at each budget. Solid bars were measured by DDO "
    "(trained proxies); hatched bars are extrapolated by the AutoScale law.",
    "weight_intervals.png": "Each domain's weight with its 95% bootstrap interval (whole seeds resampled, "
    "the same seeds at every budget; the target's interval extrapolates each paired draw). Ringed: held at "
    "its base share because its effects did not stand out from the noise.",
    "fits.png": "Each domain's measured response to its own amount (x axis: the domain's training tokens, "
    "x times the base run's at that budget; y = objective relative to the base run) and the fitted power law.",
    "validation.png": "Validation objective of every mixture trained at the target budget: markers are the "
    "measured points (mean over seeds), lines the curves smoothed as the speed-ups see them; the legend gives "
    "the measured final value. A star marks where the predicted mixture reaches a baseline's final value; the "
    "speed-up is the share of the baseline's tokens saved.",
}

#: what the pipeline's built-in comparison mixtures are

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
       border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; }
tr.featured td { font-weight: 600; background: #fff8e1; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #555; margin-top: 0.3rem; }
.answer { font-size: 1.05rem; background: #eef4ff; padding: 0.5rem 0.8rem; margin-bottom: 0.6rem; }
.notes { font-size: 0.85rem; color: #7a4b00; background: #fff8e1; padding: 0.4rem 0.8rem; }
.good { color: #1b7e2f; } .bad { color: #b3261e; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _pct(w: float | None) -> str:
    return "-" if w is None else f"{100 * w:.1f}%"


def _table(header: list[str], rows: list[list[str]], row_classes: list[str] | None = None) -> str:
    head = "".join(f'<th class="name">{_e(h)}</th>' if i == 0 else f"<th>{_e(h)}</th>" for i, h in enumerate(header))
    body = []
    for k, row in enumerate(rows):
        cls = f' class="{row_classes[k]}"' if row_classes and row_classes[k] else ""
        cells = "".join(f'<td class="name">{c}</td>' if i == 0 else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _weight_cell(p, d: str) -> str:
    """A weight, with its 95% interval when there is one; 'held' when DDO held it at its base share,
    'forced' when the others' holds leave it no freedom (the one free domain: a zero-width interval)."""
    text = _pct(p.weights.get(d))
    if d in p.intervals:
        lo, hi = p.intervals[d]
        text += f' <span class="ci">({100 * lo:.1f}-{100 * hi:.1f})</span>'
    if d in p.held:
        text += ' <i title="held at its base share: the notes above say why">held</i>'
    elif p.held and len(p.weights) - len(p.held) == 1:
        text += ' <i title="the other domains are held: its share is what they leave">forced</i>'
    return text


def _mixtures_table(data: ReportData) -> str:
    pts = sorted(data.mixtures, key=lambda p: (p.budget, not p.measured))
    header = ["domain"] + [f"{p.label} @ {format_tokens(p.budget)}" + ("" if p.measured else " (predicted)") for p in pts]
    rows = [[_e(d)] + [_weight_cell(p, d) for p in pts] for d in data.domains]
    rows.append(["<i>budget (tokens)</i>"] + [_e(format_tokens(p.budget)) for p in pts])
    return _table(header, rows)


def _predicted_table(data: ReportData) -> str:
    target = [p for p in data.mixtures if not p.measured]
    if not target:
        return "<p>No predicted mixture.</p>"
    p = max(target, key=lambda q: q.budget)
    rows = [[_e(d), _weight_cell(p, d), _e(format_tokens(p.weights.get(d, 0.0) * p.budget))] for d in data.domains]
    note = " Weights show their 95% bootstrap interval in brackets." if p.intervals else ""
    return f"<p>{_e(p.label)} for a budget of {_e(format_tokens(p.budget))} tokens.{note}</p>" + _table(
        ["domain", "weight", "tokens"], rows
    )


def _noise_table(data: ReportData) -> str:
    """Per DDO budget and domain: paired effects with intervals, held or not, replicates needed."""
    rows = []
    for label, rec in data.noise.items():
        noise = rec.get("noise")
        cost = (rec.get("cost") or {}).get("per_domain") or {}
        for d in data.domains:
            effects = []
            for e in (rec.get("effects") or {}).get(d, []):
                text = f"x{e['ratio']:.2g}: {100 * e['mean']:+.1f}%"  # as planned: x0.2, not x0.202
                if e.get("interval"):
                    text += f" ({100 * e['interval'][0]:+.1f} to {100 * e['interval'][1]:+.1f})"
                effects.append(text + (" *" if e.get("significant") else ""))
            need = (rec.get("needed") or {}).get(d)
            held = (rec.get("held") or {}).get(d, "")
            rows.append([_e(d), _e(label), _e("unknown" if noise is None else f"{100 * noise:.2f}%"),
                         _e(str(rec.get("replicates"))), _e("; ".join(effects)), _e(held or "-"),
                         _e("-" if need is None else f"{need} ({format_tokens(cost.get(d) or 0)} tokens)")])
    if not rows:
        return ""
    return ("<p>Effects are the change of the objective when one domain's amount is scaled (paired within a seed "
            "when the runs table has seeds), with 95% t intervals; * marks an effect that stands out from the "
            "noise. A held domain keeps its base share at every budget. 'Replicates for 3 SE': seeds per design "
            "point for the domain's largest effect to stand 3 standard errors from zero, and what they cost.</p>"
            + _table(["domain", "DDO budget", "run-to-run noise", "replicates", "effects (95% CI)", "held",
                      "replicates for 3 SE (cost)"], rows))


def _validation_table(data: ReportData) -> str:
    ups = {u.baseline: u for u in data.speedups}
    rows, classes = [], []
    for c in data.validation:
        u = ups.get(c.name)
        # each seed's tokens to reach the baseline, as the pipeline measured them
        need = " / ".join("not reached" if s.tokens_to_reach is None else format_tokens(s.tokens_to_reach)
                          for _, s in u.seeds) if u is not None and u.seeds else "-"
        if c.name == data.featured:
            up_text, need = "(this mixture)", "-"
        elif u is None:
            up_text = "-"
        elif u.mean is None:
            up_text = "not reached"
        else:
            up_text = _speedup_cell(u)
        need = _e(need)
        trained = format_tokens(c.tokens[-1]) if c.tokens else "-"
        rows.append([_e(c.name), f"{c.final:.4f}", _e(trained), need, up_text, _gain_cell(data.gains.get(c.name))])
        classes.append("featured" if c.name == data.featured else "")
    header = ["mixture", f"final {data.objective_label}", "tokens trained",
              f"tokens {data.featured} needs to match (per seed)", f"speed-up of {data.featured} (mean over seeds [95% CI], coloured when the CI leaves out 0)",
              f"gain of {data.featured} (95% CI over seeds): verdict"]
    from autoscale.speedup import describe_smoothing

    note = (f"<p>Speed-ups in training tokens, as the pipeline measured them (validation.json): per seed, on "
            f"that seed's curves, then the mean over seeds (not reached by one seed: not reached); the curves "
            f"smoothed as the plot's lines: "
            f"{_e(describe_smoothing(data.smoothing))}. "
            + " ".join(f"<b>{_e(n)}</b>: {_e(b.description)}." for n, b in BASELINES.items()
                       if any(c.name == n for c in data.validation)) + "</p>")
    return _table(header, rows, classes) + note


def _methods_table(data: ReportData) -> str:
    """Per method: its search compute and, at the target, its final objective and gain over uniform."""
    rows = [[f"<b>{_e(m.name)}</b>", _e(m.mixture), str(m.search_runs), _e(format_tokens(m.search_tokens)),
             f"{m.search_vs_target:.1f}", _e(format_tokens(m.shared_tokens)),
             "-" if m.final is None else f"{m.final:.4f}", _gain_cell(m.gain)] for m in data.methods]
    note = ("<p>Each method is charged the whole compute of its own design; a run two designs share (the same "
            "mixture, budget and seed) was trained once, and 'shared' says how many of its tokens were. "
            + " ".join(f"<b>{_e(m.name)}</b>: {_e(m.description)}." for m in data.methods) + "</p>")
    return _table(["method", "mixture", "search runs", "search tokens", "x one target run", "shared tokens",
                   f"final {data.objective_label}", "gain over uniform (95% CI over seeds): verdict"], rows) + note


def _downstream_table(data: ReportData) -> str:
    """Mixtures x tasks: lm-evaluation-harness accuracy, mean over seeds (+- its standard error)."""
    tasks = list(next(iter(data.downstream.values()))["tasks"])
    rows, classes = [], []
    for name, r in data.downstream.items():
        cells = []
        for t in tasks:
            v = r["tasks"][t]
            cells.append(f"{v['value']:.3f}" + ("" if v.get("stderr") is None else f" &plusmn; {v['stderr']:.3f}"))
        rows.append([_e(name), *cells, f"{r['average']:.3f}", str(r.get("seeds", 1))])
        classes.append("featured" if name == data.featured else "")
    note = ("<p>Scores of lm-evaluation-harness on every validation run (mean over seeds; &plusmn;: the standard "
            "error over seeds, or the harness's own with one seed). autoscale's local tasks (autoscale_*) are a "
            "smoke test of the evaluation path, not a measure of downstream ability.</p>")
    return _table(["mixture", *[_e(t) for t in tasks], "average", "seeds"], rows, classes) + note


def _speedup_cell(u: RecordedSpeedUp) -> str:
    """``+25.0% [-38.5%, +88.5%]``: the mean over seeds and its 95% t interval (none with one seed),
    coloured only when the interval leaves out zero: a speed-up no surer than the noise is not green."""
    values = [s.speedup for _, s in u.seeds if s.speedup is not None]
    interval = t_interval(values)[1] if len(values) == len(u.seeds) and len(values) > 1 else None
    if interval is None:
        return f"{u.mean:+.1%}" + (", 1 seed" if len(u.seeds) == 1 else "")
    cls = "good" if interval[0] > 0 else "bad" if interval[1] < 0 else ""
    text = f"{u.mean:+.1%} [{interval[0]:+.1%}, {interval[1]:+.1%}]"
    return f'<span class="{cls}">{text}</span>' if cls else text


def _gain_cell(g) -> str:
    """``+1.2% [-0.4%, +2.8%], 3 seeds: not distinguishable``, coloured by the verdict."""
    if not g:
        return "-"
    ci = "" if g.get("interval") is None else f" [{100 * g['interval'][0]:+.1f}%, {100 * g['interval'][1]:+.1f}%]"
    cls = {"win": "good", "loss": "bad"}.get(g["verdict"], "")
    seeds = f"{g['seeds']} seed{'s' * (g['seeds'] != 1)}"
    return f'<span class="{cls}">{100 * g["mean"]:+.1f}%{_e(ci)}, {seeds}: {_e(g["verdict"])}</span>'


def _validated_weights_table(data: ReportData) -> str:
    curves = [c for c in data.validation if c.weights]
    if not curves:
        return ""
    rows = [[_e(d)] + [_pct(c.weights.get(d)) for c in curves] for d in data.domains]
    return "<p>Weights of the validated mixtures:</p>" + _table(["domain"] + [c.name for c in curves], rows)


def _domain_finals_table(data: ReportData) -> str:
    """Mixtures x validation domains: final perplexity (mean over seeds); the lowest per domain marked."""
    curves = [c for c in data.validation if c.domain_finals]
    if not curves:
        return ""
    domains = list(dict.fromkeys(d for c in curves for d in c.domain_finals))
    best = {d: min(c.domain_finals[d] for c in curves if d in c.domain_finals) for d in domains}
    rows, classes = [], []
    for c in curves:
        cells = []
        for d in domains:
            v = c.domain_finals.get(d)
            cells.append("-" if v is None else (f'<span class="good">{v:.4g}</span>' if v == best[d] else f"{v:.4g}"))
        rows.append([_e(c.name)] + cells)
        classes.append("featured" if c.name == data.featured else "")
    return ("<p>Final validation perplexity per validation domain (mean over seeds; green: the lowest):</p>"
            + _table(["mixture"] + domains, rows, classes))


def _r2_cell(f) -> str:
    """R^2 of a fit: the recorded one (more than 3 points), else from its residuals ('exact' if all 0)."""
    if f.r2 is not None:
        return f"{f.r2:.3f}"
    res, y = np.asarray(f.residuals, dtype=float), np.asarray(f.y, dtype=float)
    if res.size == 0 or res.size != y.size:
        return "-"
    if np.all(np.abs(res) < 1e-9):
        return "exact"
    total = float(np.sum((y - y.mean()) ** 2))
    return "-" if total <= 0 else f"{1.0 - float(np.sum(res**2)) / total:.3f}"


def _fits_table(data: ReportData) -> str:
    rows = []
    for label, per_domain in data.fits.items():
        for d in data.domains:
            f = per_domain.get(d)
            if f is None:
                continue
            opt = "-" if f.optimum is None else f"{f.optimum:.3g}"
            base = "-" if not f.base_tokens else _e(format_tokens(f.base_tokens))
            chosen = "-" if f.optimum is None or not f.base_tokens else _e(format_tokens(f.optimum * f.base_tokens))
            r2 = _r2_cell(f)
            res = np.asarray(f.residuals, dtype=float)
            rms = "-" if res.size == 0 else f"{100 * float(np.sqrt(np.mean(res**2))):.2f}%"
            worst = "-" if res.size == 0 else f"{100 * float(np.max(np.abs(res))):.2f}%"
            rows.append([_e(f"{d}"), _e(label), f"{f.a:.4g}", f"{f.b:.4g}", f"{f.c:.4g}", str(len(f.x)), r2, rms,
                         worst, base, opt, chosen])
    if not rows:
        return ""
    return ("<p>Residuals are y - fit(x) in the normalised objective (1 = the base run's), over every run; "
            "R<sup>2</sup> is over every run too (with replicates it counts run-to-run noise as unexplained). "
            "With 3 points the 3-parameter curve passes through them when a decreasing convex curve can: "
            "'exact', where R<sup>2</sup> = 1 says nothing; when none can, the least-squares curve misses them "
            "and R<sup>2</sup> and the residuals say by how much. '-': not recorded.</p>"
            + _table(["domain", "DDO budget", "a", "b", "c", "points", "R²", "RMS residual", "max |residual|",
                      "base tokens (x = 1)", "chosen amount (x)", "chosen tokens"], rows))


def _answer(data: ReportData) -> str:
    """The page's first lines: each method's mixture at the target, then each comparison's verdict
    with its interval (what the rest of the page supports)."""
    lines = []
    for m in [w for w in data.mixtures if not w.measured]:
        held = f" (held at the base: {', '.join(m.held)})" if m.held else ""
        lines.append(f"<b>{_e(m.label)}</b> at {_e(format_tokens(m.budget))} tokens: "
                     + ", ".join(f"{_e(d)} {m.weights[d]:.1%}" for d in data.domains if d in m.weights) + _e(held))
    for name, g in data.gains.items():
        if g:
            lines.append(f"{_e(data.featured)} against {_e(name)}: {_gain_cell(g)}")
    for m in data.methods:
        if m.gain and m.mixture != data.featured:
            lines.append(f"{_e(m.mixture)} against {_e(m.gain.get('baseline', 'uniform'))}: {_gain_cell(m.gain)}")
    if not data.gains and not any(m.gain for m in data.methods):
        lines.append("Not validated at the target (target.validate: false): no verdict.")
    return '<div class="answer">' + "<br>".join(lines) + "</div>"


def render_html(data: ReportData, images: Mapping[str, bytes]) -> str:
    """The report page for ``data`` with ``images`` (file name -> PNG bytes) embedded inline."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(data.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(data.title)}</h1>",
        "<p>AutoScale (arXiv 2407.20177): DDO finds the optimal mixture at small budgets, the AutoScale law "
        "extrapolates it to the target budget, and validation trains the target model on each mixture.</p>",
    ]
    parts.append(_answer(data))
    if data.notes:
        parts.append('<div class="notes"><b>Notes and warnings</b><br>' + "<br>".join(_e(n) for n in data.notes)
                     + "</div>")
    if data.facts:
        parts.append(_table(["setting", "value"], [[_e(k), _e(v)] for k, v in data.facts.items()]))
    if data.methods:
        parts += ["<h2>Methods compared</h2>", _methods_table(data)]
    if data.validation:
        parts += ["<h2>Validation at the target budget</h2>", _validation_table(data), _domain_finals_table(data),
                  _validated_weights_table(data)]
    if data.downstream:
        parts += ["<h2>Downstream evaluation</h2>", _downstream_table(data)]
    if data.mixtures:
        parts += ["<h2>Mixtures</h2>", _mixtures_table(data), "<h2>Predicted target mixture</h2>", _predicted_table(data)]
    parts.append("<h2>Plots</h2>")
    for name, caption in PLOTS.items():
        if name in images:
            parts.append(
                f'<figure><img src="{data_uri(images[name])}" alt="{_e(name)}">'
                f"<figcaption>{_e(caption)}</figcaption></figure>"
            )
    noise = _noise_table(data)
    if noise:
        parts += ["<h2>Noise and signal in the DDO runs</h2>", noise]
    fits = _fits_table(data)
    if fits:
        parts += ["<h2>Fitted power laws</h2>", fits]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def draw_plots(data: ReportData) -> dict[str, bytes]:
    """The PNGs the data allows (file name -> bytes); a plot with nothing to show is left out."""
    images: dict[str, bytes] = {}
    if any(m.gain is not None for m in data.methods):
        images["methods.png"] = plot_methods(data.methods)
    if data.mixtures:
        images["weights_vs_budget.png"] = plot_weights_vs_budget(data.mixtures, data.domains)
    if any(p.intervals for p in data.mixtures):
        images["weight_intervals.png"] = plot_weight_intervals(data.mixtures, data.domains)
    if data.fits:
        held = {format_tokens(m.budget): m.held for m in data.mixtures if m.measured}
        images["fits.png"] = plot_fits(data.fits, data.domains, held)
    if data.validation:
        images["validation.png"] = plot_validation(
            data.validation, data.featured, data.objective_label, data.smoothing, data.speedups
        )
    return images


@dataclass(frozen=True)
class ReportFiles:
    """Where a written report lies: the HTML page and the PNGs (also embedded in the page)."""

    html: Path
    images: tuple[Path, ...]


def write_report(data: ReportData, out_dir: str | Path) -> ReportFiles:
    """Draw the plots and write ``out_dir/report.html`` plus the PNGs; returns their paths."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AutoscaleError(f"cannot create report folder {str(out)!r}: {exc.strerror}") from None
    images = draw_plots(data)
    paths = []
    for name, png in images.items():
        write_bytes_atomic(out / name, png)
        paths.append(out / name)
    page = out / "report.html"
    write_bytes_atomic(page, render_html(data, images).encode("utf-8"))
    return ReportFiles(page, tuple(paths))
