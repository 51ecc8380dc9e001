"""The report's three plots, drawn from plain values into PNG bytes.

Figures are built with `matplotlib.figure.Figure` directly (the Agg canvas), never with pyplot, so
no GUI backend or global figure state is involved and the functions are safe to call anywhere.
Sizes are fixed (inches at `DPI`) so that pages look the same from run to run.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from autoscale.errors import AutoscaleError
from autoscale.report.results import (
    CurveFit,
    MethodSummary,
    RecordedSpeedUp,
    ValidationCurve,
    WeightsAtBudget,
    validation_line,
)
from autoscale.speedup import as_tokens_saved
from autoscale.tokens import format_tokens

DPI = 110
# text.parse_math off: labels are user text (domain and mixture names), never mathtext; a name
# like "$x$" is drawn as written instead of being parsed (or crashing the plot)
_STYLE = {"axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
          "text.parse_math": False}


def domain_colors(domains: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """A fixed colour per domain, the same in every plot (tab10, then tab20 beyond 10 domains)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(domains) <= 10 else "tab20"]
    return {d: cmap(i % cmap.N) for i, d in enumerate(domains)}


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _styled(fn: Callable[..., bytes]) -> Callable[..., bytes]:
    """Run a plot function under the report's style (rc values are read as artists are made and drawn)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> bytes:
        with matplotlib.rc_context(_STYLE):
            return fn(*args, **kwargs)

    return wrapper


def _token_axis(ax, axis: str = "x") -> None:
    fmt = FuncFormatter(lambda v, _pos: format_tokens(v))
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(fmt)


@_styled
def plot_weights_vs_budget(points: Sequence[WeightsAtBudget], domains: Sequence[str] | None = None) -> bytes:
    """Stacked bars of the weights per domain at each budget, smallest budget first.

    Measured DDO optima are solid; predicted (extrapolated) mixtures are hatched and labelled
    "predicted". Returns PNG bytes.
    """
    if not points:
        raise AutoscaleError("weights plot: no mixtures to draw")
    pts = sorted(points, key=lambda p: (p.budget, not p.measured))
    doms = list(domains) if domains else list(dict.fromkeys(d for p in pts for d in p.weights))
    colors = domain_colors(doms)
    fig = _new_figure(max(6.0, 1.3 * len(pts) + 3.5), 4.6)
    ax = fig.add_subplot()
    xs = np.arange(len(pts))
    bottom = np.zeros(len(pts))
    for d in doms:
        heights = np.array([float(p.weights.get(d, 0.0)) for p in pts])
        for i, p in enumerate(pts):
            ax.bar(
                xs[i], heights[i], bottom=bottom[i], width=0.62, color=colors[d],
                alpha=1.0 if p.measured else 0.6, hatch=None if p.measured else "///",
                edgecolor="white" if p.measured else "black", linewidth=0.6,
                label=d if i == 0 else None,
            )
            if heights[i] >= 0.06:
                ax.text(xs[i], bottom[i] + heights[i] / 2, f"{heights[i]:.0%}", ha="center", va="center",
                        fontsize=8, color="black",
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.6})
        bottom += heights
    ax.set_xticks(xs, [f"{p.label}\n{format_tokens(p.budget)} tokens" for p in pts])
    for i, p in enumerate(pts):
        if not p.measured:
            ax.get_xticklabels()[i].set_fontweight("bold")
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("weight (share of the budget)")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.0%}"))
    ax.set_title("Optimal mixture per budget (solid: measured by DDO, hatched: predicted)")
    ax.legend(title="domain", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _png(fig)


@_styled
def plot_weight_intervals(points: Sequence[WeightsAtBudget], domains: Sequence[str] | None = None) -> bytes:
    """Each domain's weight at each budget with its 95% bootstrap interval (error bars).

    One group of markers per domain, one marker per budget (DDO circles, predicted diamonds); held
    domains are drawn hollow. Only mixtures with intervals are drawn. Returns PNG bytes.
    """
    pts = sorted((p for p in points if p.intervals), key=lambda p: (p.budget, not p.measured))
    if not pts:
        raise AutoscaleError("interval plot: no mixture has intervals")
    doms = list(domains) if domains else list(dict.fromkeys(d for p in pts for d in p.weights))
    fig = _new_figure(max(6.0, 1.1 * len(doms) + 3.5), 4.2)
    ax = fig.add_subplot()
    width = 0.8 / len(pts)
    shades = plt_colors(len(pts))
    for k, p in enumerate(pts):
        xs = np.arange(len(doms)) - 0.4 + width * (k + 0.5)
        w = np.array([float(p.weights.get(d, np.nan)) for d in doms])
        lo = np.array([p.intervals.get(d, (np.nan, np.nan))[0] for d in doms])
        hi = np.array([p.intervals.get(d, (np.nan, np.nan))[1] for d in doms])
        err = np.vstack([np.clip(w - lo, 0, None), np.clip(hi - w, 0, None)])
        label = f"{p.label} {format_tokens(p.budget)}" + ("" if p.measured else " (predicted)")
        ax.errorbar(xs, w, yerr=err, fmt="o" if p.measured else "D", color=shades[k], capsize=3, label=label,
                    markersize=5)
        for x, d, v in zip(xs, doms, w, strict=True):
            if d in p.held:
                ax.plot([x], [v], marker="o", markersize=9, markerfacecolor="none", color="black", linewidth=0)
    ax.set_xticks(np.arange(len(doms)), doms)
    ax.set_ylim(0, None)
    ax.set_ylabel("weight (share of the budget)")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.0%}"))
    ax.set_title("Weights with 95% bootstrap intervals (whole seeds resampled; ringed: held at base share)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _png(fig)


def plt_colors(n: int) -> list[tuple[float, ...]]:
    """``n`` shades from light to dark: small budgets light, the prediction darkest."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.15 + 0.7 * k / max(1, n - 1)) for k in range(n)]


@_styled
def plot_fits(fits: Mapping[str, Mapping[str, CurveFit]], domains: Sequence[str] | None = None,
              held: Mapping[str, Sequence[str]] | None = None) -> bytes:
    """Small multiples: per domain, the fitted y = (x + a)^(-b) + c of each DDO budget with its points.
    ``held``: budget label -> domains held at their base share there: their curve is dashed and the
    panel's title says at which budgets (the allocation did not use that fit).

    ``fits``: budget label -> domain -> fit. The x axis (log) is the domain's training tokens, x times
    the base run's tokens at that budget, when every fit of the panel knows its base tokens; else the
    relative amount x (1 = base run). y is the objective relative to the base run. The allocation's
    chosen amount, when known, is a dotted vertical line. Returns PNG bytes.
    """
    if not fits:
        raise AutoscaleError("fits plot: no fitted curves to draw")
    labels = list(fits)
    doms = list(domains) if domains else list(dict.fromkeys(d for f in fits.values() for d in f))
    ncols = min(4, len(doms))
    nrows = math.ceil(len(doms) / ncols)
    fig = _new_figure(3.0 * ncols + 0.4, 2.5 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    from matplotlib import colormaps

    series_colors = {lab: colormaps["Dark2"](i % 8) for i, lab in enumerate(labels)}
    markers = "osD^v<>"
    for k, d in enumerate(doms):
        ax = axes[k // ncols][k % ncols]
        series = [(j, lab, fits[lab][d]) for j, lab in enumerate(labels) if fits[lab].get(d) is not None]
        series = [(j, lab, f) for j, lab, f in series if f.x]
        if not series:
            ax.set_visible(False)
            continue
        in_tokens = all(f.base_tokens for _, _, f in series)
        lo = min(min(f.x) * (f.base_tokens if in_tokens else 1.0) for _, _, f in series)
        hi = max(max(f.x) * (f.base_tokens if in_tokens else 1.0) for _, _, f in series)
        held_at = [lab for _, lab, _ in series if d in (held or {}).get(lab, ())]
        for j, lab, f in series:
            scale = f.base_tokens if in_tokens else 1.0
            grid = np.geomspace(max(min(f.x) * 0.7, 1e-3), max(f.x) * 1.4, 200)
            color = series_colors[lab]
            is_held = lab in held_at
            ax.plot(grid * scale, f(grid), color=color, lw=1.6, ls="--" if is_held else "-",
                    label=f"{lab} (held)" if is_held else lab)
            # later budgets get smaller markers on top, so points at the same place (x = 1) stay visible
            ax.scatter(np.asarray(f.x) * scale, f.y, color=color, marker=markers[j % len(markers)],
                       s=max(14, 50 - 16 * j), zorder=3 + j, edgecolor="black", linewidth=0.5)
            if f.optimum is not None and np.isfinite(f.optimum):
                ax.axvline(f.optimum * scale, color=color, ls=":", lw=1.2)
        ax.set_xscale("log")
        ax.set_xlim(lo * 0.7, hi * 1.4)
        # a few round values in plain numbers; log-axis minor labels would overlap
        ticks = _round_ticks(lo * 0.7, hi * 1.4)
        ax.set_xticks(ticks, [format_tokens(t) if in_tokens else f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(d + (f" (held at {', '.join(held_at)})" if held_at else ""))
        ax.axhline(1.0, color="0.7", lw=0.8, zorder=0)
        ax.grid(alpha=0.3, which="both")
        if k % ncols == 0:
            ax.set_ylabel("objective / base")
        if k // ncols == nrows - 1 or k + ncols >= len(doms):
            ax.set_xlabel("tokens of this domain" if in_tokens else "amount / base amount")
    for k in range(len(doms), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, title="DDO budget", loc="outside lower center", ncols=max(1, len(labels)),
               fontsize=8, frameon=False)
    fig.suptitle("Per-domain response y = (x + a)^(-b) + c: measured points and fit (dotted: chosen amount)",
                 fontsize=11)
    return _png(fig)


def _round_ticks(lo: float, hi: float, most: int = 5) -> list[float]:
    """Round values (1-2-5, else 1-3, else powers of 10) between ``lo`` and ``hi`` > 0, at most ``most``."""
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks: list[float] = []
    for mantissas in ((1, 2, 5), (1, 3), (1,)):
        ticks = [float(f"{m * 10.0**e:.12g}") for e in decades for m in mantissas if lo <= m * 10.0**e <= hi]
        if len(ticks) <= most:
            break
    if len(ticks) < 2:  # a narrow range: three values rounded to 2 significant digits
        ticks = sorted({float(f"{v:.2g}") for v in np.geomspace(lo, hi, 5)[1:4]})
    return ticks


@_styled
def plot_validation(
    curves: Sequence[ValidationCurve],
    predicted: str,
    objective_label: str = "validation objective",
    smoothing: float = 0.0,
    speedups: Sequence[RecordedSpeedUp] = (),
) -> bytes:
    """Validation objective vs training tokens for every mixture at the target budget.

    Markers are the measured points (mean over seeds), bands the seeds' range; lines are the curves
    smoothed as the speed-ups see them (`autoscale.speedup.smooth` with weight ``smoothing``; 0: through the points).
    The evaluation before training is a marker only (usually above the zoomed axis, then noted). The
    legend's "final" is the measured final objective. ``speedups`` are the pipeline's (per seed, from
    validation.json): for each baseline a dashed horizontal line marks its final smoothed objective
    and a star where the predicted mixture reaches it (both the mean over seeds); the box lists the
    mean speed-ups (share of the baseline's tokens saved). Returns PNG bytes.
    """
    if not curves:
        raise AutoscaleError("validation plot: no validation curves to draw")
    pred = next((c for c in curves if c.name == predicted), None)
    fig = _new_figure(8.6, 5.0)
    ax = fig.add_subplot()
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    order = [c for c in curves if c.name == predicted] + [c for c in curves if c.name != predicted]
    colors = {c.name: ("black" if c.name == predicted else cmap((i + 1) % 10)) for i, c in enumerate(order)}
    shown: dict[str, np.ndarray] = {}
    for c in order:
        is_pred = c.name == predicted
        x, line = validation_line(c, smoothing)
        shown[c.name] = line
        ax.plot(x, line, color=colors[c.name], lw=2.2 if is_pred else 1.4, alpha=0.9,
                label=f"{c.name} (final {c.final:.4g})", zorder=4 if is_pred else 2)
        ax.plot(c.tokens, c.objective, linestyle="none", marker="D" if is_pred else "o", ms=4.5 if is_pred else 4,
                color=colors[c.name], markeredgecolor="white", markeredgewidth=0.6, zorder=5 if is_pred else 3)
        if c.spread:  # the seeds' range at each measured point
            ax.fill_between(c.tokens, c.spread[0], c.spread[1], color=colors[c.name], alpha=0.15, lw=0,
                            zorder=1, label=f"_{c.name} seeds")
    by_name = {c.name: c for c in curves}
    ups = [u for u in speedups if u.baseline in by_name] if pred is not None else []
    for u in ups:
        c, level, reach = by_name[u.baseline], u.mean_of("baseline_final"), u.mean_of("tokens_to_reach")
        if level is None:
            continue
        ax.hlines(level, reach if reach is not None else c.tokens[0], c.tokens[-1], colors=[colors[c.name]],
                  linestyles="--", lw=1.0)
        if reach is not None:
            ax.plot([reach], [level], marker="*", ms=13, color=colors[c.name], markeredgecolor="black", zorder=6)
    # the speed-ups go in a box in the corner so they never overlap the curves' ends
    if ups:
        lines = [f"vs {u.baseline}: " + (as_tokens_saved(u.mean) if u.mean is not None else "not reached")
                 for u in ups]
        ax.text(0.99, 0.98, f"{predicted} reaches each final value with\n" + "\n".join(lines), transform=ax.transAxes,
                ha="right", va="top", fontsize=8.5, family="monospace",
                bbox={"boxstyle": "round", "fc": "white", "ec": "0.6", "alpha": 0.9})
    # zoom on the part of the curves where the mixtures differ, not the first steep steps
    # (the lines' and the measured last points must stay in view)
    finals = [float(y[-1]) for y in shown.values() if len(y)]
    finals += [float(c.objective[-1]) for c in curves if c.objective]
    finals = [f for f in finals if np.isfinite(f)]
    if finals:
        lo, hi = min(finals), max(finals)
        span = max(hi - lo, 1e-3 * abs(hi), 1e-9)
        first = [float(np.nanmax(y)) for y in shown.values() if len(y)]
        top = max(min(hi + 5 * span, max(first, default=hi)), hi + 0.3 * span)
        ax.set_ylim(lo - 0.8 * span, top)
        before = [float(v) for c in curves for t, v in zip(c.tokens, c.objective, strict=True) if t <= 0]
        if before and max(before) > top:
            ax.text(0.01, 0.98, f"before training: {max(before):.4g} (above the axis)", transform=ax.transAxes,
                    ha="left", va="top", fontsize=8, color="0.35", zorder=7,
                    bbox={"boxstyle": "round", "fc": "white", "ec": "none", "alpha": 0.85})
    _token_axis(ax)
    ax.set_xlabel("training tokens")
    ax.set_ylabel(objective_label)
    how = ("lines smoothed, " if smoothing > 0 else "") + ("bands: the seeds' range, " if any(c.spread for c in curves)
                                                          else "")
    ax.set_title(f"Validation at the target budget\n(points: mean over seeds, {how}stars: the predicted mixture "
                 "reaches a baseline's final value)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8.5, frameon=True)
    return _png(fig)


@_styled
def plot_methods(methods: Sequence[MethodSummary]) -> bytes:
    """Each method's gain over uniform at the target (mean over validation seeds, 95% interval as a
    bar) against its search compute, as a multiple of one target run. Returns PNG bytes."""
    shown = [m for m in methods if m.gain is not None]
    if not shown:
        raise AutoscaleError("no method has a gain over uniform to plot")
    fig = _new_figure(6.5, 4.0)
    ax = fig.add_subplot()
    ax.axhline(0.0, color="0.6", lw=1, ls="--")
    for i, m in enumerate(shown):
        g = m.gain
        assert g is not None
        lo, hi = g.get("interval") or (g["mean"], g["mean"])
        color = f"C{i % 10}"
        ax.errorbar([m.search_vs_target], [100 * g["mean"]], yerr=[[100 * (g["mean"] - lo)], [100 * (hi - g["mean"])]],
                    fmt="o", color=color, capsize=4, ms=7)
        ax.annotate(f"{m.name} ({g['verdict']})", (m.search_vs_target, 100 * g["mean"]), xytext=(6, 6 - 18 * (i % 2)),
                    textcoords="offset points", fontsize=9, color=color)
    ax.set_xlabel("search compute (multiples of one target run)")
    ax.set_ylabel("gain over uniform at the target (%)")
    ax.set_title("Gain over uniform against search compute (bars: 95% interval over validation seeds)")
    ax.margins(x=0.25, y=0.2)
    return _png(fig)
