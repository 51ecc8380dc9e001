"""DDO end to end: plan -> train (here: a synthetic world) -> fill -> fit -> allocation.

The synthetic world is the DDO model itself, so a correct fit must recover its parameters exactly:
objective(tokens) = L0 * (1 + sum_i (y_i(x_i) - 1)), y_i(x) = (x + a_i)^(-b_i) + c_i with y_i(1) = 1,
and x_i = tokens_i / base tokens_i.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from autoscale.ddo.allocate import allocate
from autoscale.ddo.fit import fit_ddo
from autoscale.ddo.plan import plan_ddo
from autoscale.ddo.runs import RunsTable
from autoscale.errors import AutoscaleError
from autoscale.mixture import Mixture

# the published GPT-2 Large DDO runs, shipped with the repository (source: examples/README.md)
REFERENCE = str(Path(__file__).resolve().parents[1] / "examples" / "ddo_gpt2_large_1.2B.csv")
PUBLISHED = {  # METHOD.md section 4
    "common_crawl": (2.66587, 1.24920, 0.80265),
    "github": (6.61618, 1.43600, 0.94582),
    "books": (2.67360, 1.53626, 0.86452),
    "wiki": (2.46311, 1.82873, 0.89685),
    "c4": (2.51838, 1.18587, 0.77504),
    "stackexchange": (2.88996, 1.95363, 0.92962),
    "arxiv": (3.31917, 1.92667, 0.94033),
}
PUBLISHED_WEIGHTS = [0.2320, 0.0286, 0.1819, 0.1684, 0.2646, 0.0911, 0.0335]


@dataclass
class SeparableWorld:
    """A ground truth for DDO: per-domain power laws around a base mixture."""

    domains: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    base_objective: float = 28.0

    @classmethod
    def random(cls, domains, seed=0):
        rng = np.random.default_rng(seed)
        m = len(domains)
        return cls(tuple(domains), rng.uniform(2.0, 6.0, m), rng.uniform(1.1, 2.0, m))

    @property
    def c(self) -> np.ndarray:
        return 1.0 - (1.0 + self.a) ** (-self.b)  # y_i(1) = 1

    def objective(self, x: np.ndarray) -> np.ndarray:
        """Objective of runs with relative amounts ``x`` ([runs, m])."""
        y = (x + self.a) ** (-self.b) + self.c
        return self.base_objective * (1.0 + (y - 1.0).sum(axis=-1))

    def fill(self, table: RunsTable, noise: float = 0.0, seed: int = 0) -> RunsTable:
        """The eval cells a trainer would report: per-eval scales around the objective, plus noise."""
        x = table.tokens / table.tokens[0]
        obj = self.objective(x)
        k = len(table.eval_names)
        scales = np.linspace(0.5, 1.5, k) if k > 1 else np.ones(1)
        evals = obj[:, None] * scales[None, :]
        if noise:
            evals *= 1 + np.random.default_rng(seed).normal(0, noise, evals.shape)
        return table.with_evals(evals)

    def optimum(self, budget_relative: float, lo: float) -> np.ndarray:
        return allocate(self.a, self.b, budget_relative, lo=lo).n


def with_replicates(table: RunsTable, copies: int) -> RunsTable:
    idx = np.repeat(np.arange(table.n_runs), copies)
    runs = tuple(f"{table.runs[i]}-seed{j}" for i, j in zip(idx, np.tile(np.arange(copies), table.n_runs), strict=True))
    return RunsTable(runs, table.domains, table.tokens[idx], table.eval_names, table.evals[idx])


# -- the published example ------------------------------------------------------------------------


def test_reference_csv_reproduces_the_published_fits_and_weights():
    result = fit_ddo(RunsTable.read_csv(REFERENCE))
    for d, (a, b, c) in PUBLISHED.items():
        f = result.fits[d]
        assert (f.a, f.b, f.c) == pytest.approx((a, b, c), abs=1e-4)
        assert f.exact
    assert list(result.mixture.weights.values()) == pytest.approx(PUBLISHED_WEIGHTS, abs=1e-3)
    assert result.bounded == {"github": "floor"}
    assert result.mixture.weights["github"] == pytest.approx(0.2 / 7)
    assert result.mixture.budget == pytest.approx(7 * 171428571)  # default budget: the base total
    # one run per point: nothing is held, and the result says the noise is unknown
    assert result.held == {} and not result.noise.known
    assert result.warnings == ["the noise is unknown (one run per design point): train replicates to measure it"]


def test_predicted_objective_is_the_separable_sum_of_the_fits():
    result = fit_ddo(RunsTable.read_csv(REFERENCE))
    n = result.allocation.n
    by_hand = 1 + sum(float(result.fits[d](n[i])) - 1 for i, d in enumerate(result.fits))
    assert result.predicted_objective == pytest.approx(result.base_objective * by_hand, rel=1e-12)
    assert result.predicted_objective == pytest.approx(26.48, abs=0.01)
    assert result.base_objective == pytest.approx(28.11, abs=0.01)
    meta = result.mixture.metadata
    assert meta["predicted_objective"] == result.predicted_objective and meta["bounded"] == {"github": "floor"}
    assert meta["fits"]["github"]["a"] == pytest.approx(6.61618, abs=1e-4)
    assert meta["offset_tokens"]["github"] == pytest.approx(result.fits["github"].a * 171428571)


# -- plan -> fill -> fit round trips ---------------------------------------------------------------


@pytest.mark.parametrize(
    "ratios, domains",
    [
        ((0.2, 3.0), ("web", "code", "books", "wiki")),
        ((0.2, 0.5, 2.0, 3.0), ("web", "code", "books", "wiki")),
        ((0.2, 3.0), ("wiki-日本語", "código", "news—2024", "a b", "x.y", "🙂", "c4", "the-pile",
                      "données", "中文网页", "stack-exchange", "arXiv")),
    ],
    ids=["3-points", "5-points", "12-unicode-domains"],
)
def test_round_trip_recovers_the_world(tmp_path, ratios, domains):
    world = SeparableWorld.random(domains, seed=len(domains) + len(ratios))
    planned = plan_ddo(domains, budget=1.2e9, ratios=ratios)
    planned.to_csv(tmp_path / "runs.csv")  # what a user fills in
    filled = world.fill(RunsTable.read_csv(tmp_path / "runs.csv"))
    filled.to_csv(tmp_path / "runs.csv")
    result = fit_ddo(RunsTable.read_csv(tmp_path / "runs.csv"))

    assert tuple(result.mixture.domains) == domains
    for i, d in enumerate(domains):
        f = result.fits[d]
        assert f.n_points == len(ratios) + 1
        assert (f.a, f.b, f.c) == pytest.approx((world.a[i], world.b[i], world.c[i]), rel=1e-5)
        assert f.exact == (len(ratios) == 2)
        if len(ratios) > 2:
            assert f.r2 == pytest.approx(1.0, abs=1e-9)
            assert len(result.mixture.metadata["fits"][d]["residuals"]) == 5
    m = len(domains)
    expected = world.optimum(m, lo=0.2) / m
    assert list(result.mixture.weights.values()) == pytest.approx(expected.tolist(), abs=1e-6)


def test_non_uniform_base_allocates_tokens_not_relative_units():
    domains = ("web", "code", "books")
    world = SeparableWorld.random(domains, seed=3)
    base = Mixture({"web": 6.0, "code": 1.0, "books": 3.0})
    table = world.fill(plan_ddo(base=base, budget=1e6))
    result = fit_ddo(table, min_ratio=0.0)
    base_tokens = np.array([6e5, 1e5, 3e5])
    n = np.array(list(result.mixture.tokens.values())) / base_tokens
    # KKT in tokens: the marginal gain per token is equal across free domains, lower at a floor
    gain = world.b * (n + world.a) ** (-world.b - 1) / base_tokens
    free = np.array([d not in result.bounded for d in domains])
    assert free.sum() >= 2 and np.allclose(gain[free], gain[free][0], rtol=1e-6)
    assert np.all(gain[~free] <= gain[free][0])
    assert result.mixture.budget == pytest.approx(1e6)


def test_budget_floors_and_caps():
    domains = ("web", "code", "books", "wiki")
    world = SeparableWorld.random(domains, seed=5)
    table = world.fill(plan_ddo(domains, budget=4e6))
    result = fit_ddo(table, budget=8e6, max_tokens={"web": 1.5e6})
    assert result.mixture.budget == pytest.approx(8e6)
    assert result.bounded.get("web") == "cap" and result.mixture.tokens["web"] == pytest.approx(1.5e6)
    # the floor scales with the budget: 0.2 x the base share
    floored = fit_ddo(table, budget=8e6, min_ratio=0.9)
    assert min(floored.mixture.tokens.values()) >= 0.9 * 2e6 * (1 - 1e-12)
    assert "floor" in floored.bounded.values()
    # a cap below the floor (little data) wins, with a warning
    scarce = fit_ddo(table, max_tokens={"code": 1e5})
    assert scarce.mixture.tokens["code"] == pytest.approx(1e5)
    assert any("'code': cap of 1e+05 tokens is below its floor" in w for w in scarce.warnings)


def test_warns_when_a_domain_does_not_improve_with_more_tokens():
    domains = ("web", "code", "books")
    world = SeparableWorld.random(domains, seed=2)
    table = world.fill(plan_ddo(domains, budget=3e6))
    evals = table.evals.copy()
    evals[table.runs.index("code-x3")] = evals[0] * 1.01  # more code made things worse
    result = fit_ddo(table.with_evals(evals))
    assert any("'code'" in w and "does not fall" in w for w in result.warnings)
    assert result.mixture.metadata["warnings"] == result.warnings


def test_warns_when_no_power_law_passes_through_three_points():
    domains = ("web", "code", "books")
    table = SeparableWorld.random(domains, seed=2).fill(plan_ddo(domains, budget=3e6))
    evals = table.evals.copy()
    evals[table.runs.index("books-x0.2")] = evals[0] * 1.001  # falls, but concave: 0.2x barely hurts
    evals[table.runs.index("books-x3")] = evals[0] * 0.95
    result = fit_ddo(table.with_evals(evals))
    assert not result.fits["books"].exact
    assert any("'books': no power law passes exactly" in w for w in result.warnings)


# -- bootstrap -------------------------------------------------------------------------------------


def test_bootstrap_gives_intervals_around_the_point_estimate_and_is_seeded():
    domains = ("web", "code", "books")
    world = SeparableWorld.random(domains, seed=7)
    table = world.fill(with_replicates(plan_ddo(domains, budget=3e6), 3), noise=2e-3, seed=1)
    first = fit_ddo(table, bootstrap=40, seed=11)
    again = fit_ddo(table, bootstrap=40, seed=11)
    other = fit_ddo(table, bootstrap=40, seed=12)
    assert first.intervals == again.intervals and first.intervals != other.intervals
    for d, (lo, hi) in first.intervals.items():
        assert lo < hi
        assert lo - 1e-9 <= first.mixture.weights[d] <= hi + 1e-9
    assert first.mixture.metadata["intervals"]["web"] == list(first.intervals["web"])


def test_bootstrap_without_replicates_is_an_error():
    table = SeparableWorld.random(("a", "b"), seed=1).fill(plan_ddo(("a", "b"), budget=1e6))
    with pytest.raises(AutoscaleError, match="bootstrap needs replicate runs"):
        fit_ddo(table, bootstrap=20)


def test_bootstrap_with_only_base_replicates_says_the_rest_stay_fixed():
    domains = ("a", "b")
    plan = plan_ddo(domains, budget=1e6)
    idx = np.array([0, 0, 0, *range(1, plan.n_runs)])
    table = RunsTable(tuple(f"r{i}" for i in range(idx.size)), domains, plan.tokens[idx], plan.eval_names,
                      plan.evals[idx])
    table = SeparableWorld.random(domains, seed=1).fill(table, noise=1e-3)
    result = fit_ddo(table, bootstrap=20)
    assert any("4 of 5 design points have a single run" in w for w in result.warnings)


# -- bad designs -----------------------------------------------------------------------------------


def reference_rows(drop=(), extra=()):
    table = RunsTable.read_csv(REFERENCE)
    keep = [i for i, r in enumerate(table.runs) if r not in drop]
    runs = [table.runs[i] for i in keep] + [r for r, _ in extra]
    tokens = np.vstack([table.tokens[keep], *[t for _, t in extra]]) if extra else table.tokens[keep]
    evals = np.vstack([table.evals[keep], *[table.evals[:1] for _ in extra]]) if extra else table.evals[keep]
    return RunsTable(tuple(runs), table.domains, tokens, table.eval_names, evals)


def test_a_table_without_its_base_run_is_refused():
    with pytest.raises(AutoscaleError, match="no base run"):
        fit_ddo(reference_rows(drop=("base",)))


def test_a_run_that_changes_two_domains_is_named():
    two = np.full((1, 7), 171428571.0)
    two[0, :2] = 34285714
    with pytest.raises(AutoscaleError, match=r"run 'both-x0.2' changes 2 domains \(common_crawl, github\)"):
        fit_ddo(reference_rows(extra=[("both-x0.2", two)]))


def test_a_domain_with_two_points_is_refused():
    with pytest.raises(AutoscaleError, match="domain 'wiki' has 2 distinct token amounts"):
        fit_ddo(reference_rows(drop=("wiki-x3",)))


def test_infeasible_bounds_and_unknown_domains():
    table = RunsTable.read_csv(REFERENCE)
    caps = {d: 1e8 for d in table.domains}
    with pytest.raises(AutoscaleError, match="caps allow"):
        fit_ddo(table, max_tokens=caps)
    with pytest.raises(AutoscaleError, match="floors need"):
        fit_ddo(table, min_ratio=1.5)
    with pytest.raises(AutoscaleError, match="unknown domain 'reddit'"):
        fit_ddo(table, max_tokens={"reddit": 1e9})
    with pytest.raises(AutoscaleError, match="positive number of tokens"):
        fit_ddo(table, budget=-1)


def test_fit_ddo_budgets_from_the_package_gives_the_pipelines_optima(tmp_path, simworld_in_process):
    """The README's route for one's own tables: `autoscale.fit_ddo_budgets` on an experiment's runs
    tables gives the DDO optima `autoscale run` wrote (the same held domains at every budget)."""
    import json

    import autoscale
    from cli_helpers import run_cli, tiny_experiment

    assert run_cli("run", str(tiny_experiment(tmp_path)), "--quiet") == 0
    folder = tmp_path / "tiny"
    budgets = (1_000_000, 4_000_000)
    tables = {b: autoscale.RunsTable.read_csv(folder / f"autoscale_runs_{b}.csv") for b in budgets}
    results = autoscale.fit_ddo_budgets(tables)
    for b in budgets:
        written = json.loads((folder / f"autoscale_{b}.json").read_text())["mixture"]["weights"]
        assert dict(results[b].mixture.weights) == pytest.approx(written, rel=1e-9)
