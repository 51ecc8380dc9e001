"""The Mixture value: tokens per domain, weights and budget derived, JSON form."""

import json
import re

import pytest

from autoscale.errors import AutoscaleError
from autoscale.mixture import Mixture


def test_weights_and_budget_come_from_tokens_in_domain_order():
    mix = Mixture({"web": 6e8, "code": 2e8, "books": 2e8})
    assert mix.domains == ("web", "code", "books")
    assert mix.budget == 1e9
    assert mix.weights == {"web": 0.6, "code": 0.2, "books": 0.2}


def test_json_round_trip_keeps_order_and_metadata():
    mix = Mixture({"zeta": 1.0, "alpha": 3.0}, {"method": "ddo", "fits": {"zeta": {"a": 1.5}}})
    data = json.loads(mix.to_json())
    assert list(data["tokens"]) == ["zeta", "alpha"]
    assert data["weights"] == {"zeta": 0.25, "alpha": 0.75}
    assert data["budget"] == 4.0 and data["method"] == "ddo"
    back = Mixture.from_json(mix.to_json())
    assert back.tokens == mix.tokens and back.metadata["fits"] == {"zeta": {"a": 1.5}}


def test_only_tokens_are_required_and_stale_weights_are_recomputed():
    mix = Mixture.from_json('{"tokens": {"a": 1, "b": 3}, "weights": {"a": 0.9, "b": 0.1}, "budget": 7}')
    assert mix.weights == {"a": 0.25, "b": 0.75} and mix.budget == 4.0


def test_from_weights_and_scaled_to_keep_proportions():
    mix = Mixture.from_weights({"a": 1, "b": 3}, budget=8e9)
    assert mix.tokens == {"a": 2e9, "b": 6e9}
    assert mix.scaled_to(1e9).weights == mix.weights and mix.scaled_to(1e9).budget == pytest.approx(1e9)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "malformed JSON"),
        ('{"weights": {"a": 1}}', "no 'tokens'"),
        ('{"tokens": {}}', "non-empty"),
        ('{"tokens": {"a": -1}}', ">= 0"),
        ('{"tokens": {"a": "many"}}', "must be a number"),
        ('{"tokens": {"a": true}}', "must be a number"),
        ('{"tokens": {"a": 0, "b": 0}}', "positive"),
        ('{"tokens": {"a": 1, "a": 2}}', "appears twice"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_bad_json_is_one_user_error(text, message):
    with pytest.raises(AutoscaleError, match=message):
        Mixture.from_json(text)


def test_mixture_is_immutable():
    mix = Mixture({"a": 1.0})
    with pytest.raises(TypeError):
        mix.tokens["a"] = 2.0  # type: ignore[index]


# -- one rule for domain names, a finite total ------------------------------------------------------


@pytest.mark.parametrize("name", ["web", "wiki-日本語", "données", "c4 en", "$x$", "a/b", "x" * 100, "ab\u200dc"])
def test_domain_names_that_are_fine(name):
    from autoscale.domains import domain_name_problem

    assert domain_name_problem(name) is None
    assert Mixture({name: 1.0, "other": 1.0}).domains == (name, "other")


@pytest.mark.parametrize("name, problem", [
    ("a,b", "contains ','"), ("a=b", "contains '='"), ("t[0]", "contains '['"), ("", "must not be empty"),
    (" web", "surrounding whitespace"), ("web\n", "surrounding whitespace"), ("w\teb", "control character"),
    ("a\u202eb", "control character"), ("x" * 101, "101 characters long, more than 100"),
])
def test_domain_names_that_are_refused(name, problem):
    from autoscale.data.sources import check_domain_name as store_rule
    from autoscale.domains import check_domain_names

    with pytest.raises(AutoscaleError, match=re.escape(problem)):
        Mixture({name: 1.0, "other": 1.0})
    with pytest.raises(AutoscaleError, match=re.escape(problem)):
        check_domain_names(["other", name])
    with pytest.raises(AutoscaleError):  # a store's names: this rule and folder-safe characters
        store_rule(name)


def test_a_mixture_needs_two_domains_only_where_it_is_optimised():
    from autoscale.domains import check_mixture_domains

    assert Mixture({"web": 1.0}).weights == {"web": 1.0}  # a value may hold one domain (held domains...)
    with pytest.raises(AutoscaleError, match="a data mixture needs at least 2 domains, got 1 \\(web\\)"):
        check_mixture_domains(["web"])
    with pytest.raises(AutoscaleError, match="duplicate domain name 'web'"):
        check_mixture_domains(["web", "web"])


def test_a_total_that_overflows_is_refused_and_near_the_limit_is_fine():
    with pytest.raises(AutoscaleError, match="a mixture's total must be finite"):
        Mixture.from_json('{"tokens": {"web": 1e308, "code": 1e308}}')
    with pytest.raises(AutoscaleError, match="weights: .*a mixture's total must be finite"):
        Mixture.from_weights({"web": 1e308, "code": 1e308}, 1e9)
    big = Mixture.from_weights({"web": 2.0, "code": 2.0}, 1.7e308)  # weights above 1 times a huge budget
    assert big.tokens == {"web": 8.5e307, "code": 8.5e307} and big.budget == 1.7e308
    assert json.loads(big.to_json())["budget"] == 1.7e308  # never Infinity
