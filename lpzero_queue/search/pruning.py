"""Rule-based pruning (RPS, docs/method.md section 6) as explicit, named rules.

Every rejected candidate records the name of the rule that fired.

Static rules, checked in this order before any model is touched, on the canonical form
(:func:`~lpzero_queue.proxies.expression.canonicalize`: ``no_op`` dropped, idempotent runs and
self-inverse pairs collapsed, commutative branches ordered):

- the rules of :func:`~lpzero_queue.proxies.expression.is_provably_constant`, by their own names:
  ``difference_of_identical_branches``, ``scalar_then_normalizer``, ``product_with_zero_branch``;
- ``constant_branch``: exactly one branch is provably constant
  (:func:`~lpzero_queue.proxies.expression.constant_branch_value`). The proxy is then
  ``c (+, -, *) mean(other branch)`` over the first ``min(n_left, n_right)`` tensors: it depends
  on one branch only and ranks like that single branch (up to sign), so the constant branch is a
  wasted half of the expression. It is rejected always, without checking whether the single
  branch was already evaluated: single-branch rankings remain reachable through two live branches
  (e.g. ``sum(x, x)``), and the check would need a model-aware notion of list lengths.
  Under the ``total`` reduction the rule fires for ``product`` only: ``total(sum(c, x))`` is
  ``n * c + sum(x)`` over the ``n`` pairs, which adds the depth to the single branch (a different
  ranking), while ``total(product(c, x))`` is ``c * sum(x)`` and ranks like one branch;
- ``duplicate``: the canonical text was already evaluated in this run (``seen``).

Dynamic rules, on the probe set (the first ``probe_size`` architectures of the fitness sample):

- ``error``: any probe evaluation raised (status ``error`` or ``timeout``);
- ``nonfinite``: any probe score is NaN or infinite (status ``nonfinite``, or a non-finite number);
- ``all_identical``: every probe score is equal (at least two scores);
- ``probe_far_below``: the population has at least ``probe_min_population`` members and the
  candidate's signed probe correlation (``config.fitness``) is strictly below
  ``median(population fitness) - probe_margin``. Signed, because fitness is signed: a candidate
  ranking architectures backwards has a low fitness, however large its magnitude.

With ``config.rps`` False nothing is skipped: no static rule fires (duplicates are evaluated
again), and of the dynamic rules only the hard failures ``error`` and ``nonfinite`` fire (they leave
no fitness to compute). Constant scores are then found on the full set (:func:`hard_failure`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from lpzero_queue.proxies.expression import (
    Expression,
    canonicalize,
    constant_branch_value,
    format_expression,
    is_provably_constant,
)
from lpzero_queue.search.config import SearchConfig

__all__ = [
    "DYNAMIC_RULES",
    "PROVABLY_CONSTANT_RULES",
    "STATIC_RULES",
    "PruneDecision",
    "correlation_fitness",
    "dynamic_prune",
    "hard_failure",
    "rule_status",
    "search_fitness",
    "static_prune",
]

PROVABLY_CONSTANT_RULES: tuple[str, ...] = (
    "difference_of_identical_branches",
    "scalar_then_normalizer",
    "product_with_zero_branch",
)
STATIC_RULES: tuple[str, ...] = (*PROVABLY_CONSTANT_RULES, "constant_branch", "duplicate")
DYNAMIC_RULES: tuple[str, ...] = ("error", "nonfinite", "all_identical", "probe_far_below")
_ERROR_STATUSES = frozenset({"error", "timeout"})


@dataclass(frozen=True)
class PruneDecision:
    """Outcome of the static rules for one expression.

    Attributes:
        rule: Name of the rule that rejected the expression, or None if it is to be evaluated.
        canonical: Its canonical form (what duplicates are checked against).
    """

    rule: str | None
    canonical: Expression

    @property
    def canonical_text(self) -> str:
        """Text form of the canonical expression."""
        return format_expression(self.canonical)


def static_prune(expr: Expression, seen: Collection[str], *, rps: bool = True) -> PruneDecision:
    """Apply the static rules (module docstring) in order; the first that fires is returned.

    Args:
        expr: The expression as sampled.
        seen: Canonical texts already evaluated in this run; not modified.
        rps: False disables every static rule (the canonical form is still returned).

    Returns:
        The decision: the rule name (or None) and the canonical expression.
    """
    canonical = canonicalize(expr)
    if not rps:
        return PruneDecision(None, canonical)
    rule = is_provably_constant(canonical)
    if rule is not None:
        return PruneDecision(rule, canonical)
    left = constant_branch_value(canonical.left)
    right = constant_branch_value(canonical.right)
    one_constant = (left is None) != (right is None)
    if one_constant and (canonical.reduce == "mean" or canonical.binary == "product"):
        return PruneDecision("constant_branch", canonical)
    if format_expression(canonical) in seen:
        return PruneDecision("duplicate", canonical)
    return PruneDecision(None, canonical)


def hard_failure(scores: Sequence[float | None], statuses: Sequence[str]) -> str | None:
    """The hard failure among scores of one candidate, checked in the order below.

    Args:
        scores: Score per architecture (None where the evaluation did not succeed).
        statuses: Evaluation status per architecture ("ok", "nonfinite", "error", "timeout").

    Returns:
        ``"error"`` (any error or timeout, or an "ok" without a score), ``"nonfinite"`` (any
        non-finite score), ``"all_identical"`` (two or more scores, all equal), or None.

    Raises:
        ValueError: if ``scores`` and ``statuses`` differ in length.
    """
    if len(scores) != len(statuses):
        raise ValueError(f"scores ({len(scores)}) and statuses ({len(statuses)}) differ in length")
    if any(s in _ERROR_STATUSES for s in statuses):
        return "error"
    if any(s == "ok" and v is None for v, s in zip(scores, statuses, strict=True)):
        return "error"  # an inconsistent result is a bug upstream, not a proxy property
    if any(s == "nonfinite" for s in statuses) or any(
        v is not None and not math.isfinite(v) for v in scores
    ):
        return "nonfinite"
    if len(scores) >= 2 and all(v == scores[0] for v in scores):
        return "all_identical"
    return None


def correlation_fitness(
    scores: Sequence[float], truth: Sequence[float], metric: str
) -> float | None:
    """Signed rank correlation of finite scores with truth oriented higher-is-better.

    Equal to the ``spearman`` / ``kendall`` field of
    :func:`~lpzero_queue.proxies.correlation.rank_correlations` (with both directions
    higher-is-better), computing only the requested metric: the coordinator calls this once per
    candidate.

    Args:
        scores: Finite proxy scores (the search is direction-free: higher is taken as better).
        truth: Ground truth for the same architectures, oriented so that higher is better.
        metric: "spearman" (Pearson correlation of average ranks) or "kendall" (tau-b).

    Returns:
        The correlation, or None when either side is constant.

    Raises:
        ValueError: on an unknown metric, mismatched lengths, fewer than two or non-finite values.
    """
    if metric not in ("spearman", "kendall"):
        raise ValueError(f"unknown fitness metric {metric!r}; valid: spearman, kendall")
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if s.shape != t.shape or s.ndim != 1 or len(s) < 2:
        raise ValueError(f"need equal-length sequences of >= 2 values, got {s.shape}, {t.shape}")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(t))):
        raise ValueError("scores and truth must be finite")
    if np.all(s == s[0]) or np.all(t == t[0]):
        return None
    if metric == "kendall":
        return float(stats.kendalltau(s, t).statistic)
    return float(np.corrcoef(_average_ranks(s), _average_ranks(t))[0, 1])


def search_fitness(
    scores: Sequence[float],
    truth: Sequence[float],
    metric: str,
    *,
    strata: Sequence[Hashable] = (),
    within_weight: float = 0.0,
) -> float | None:
    """The fitness of a candidate: the overall correlation, optionally blended with within-strata.

    ``(1 - w) * overall + w * mean(within)``, where ``within`` is :func:`correlation_fitness` inside
    each stratum (e.g. depth) with at least 3 members and a non-constant truth there; a proxy that
    is constant inside a stratum ranks nothing there and counts 0 (so a depth-only proxy does not
    escape the term). With ``w = 0`` (default) or no qualifying stratum it is the overall
    correlation alone. A within
    term rewards proxies that rank architectures of the same depth, which the overall correlation
    on a depth-dominated benchmark barely sees.

    Args:
        scores: Finite proxy scores, as for :func:`correlation_fitness`.
        truth: Ground truth oriented higher-is-better.
        metric: "spearman" or "kendall".
        strata: One label per architecture (empty: no strata).
        within_weight: ``w`` in [0, 1].

    Returns:
        The fitness, or None when the overall correlation is undefined (constant scores).
    """
    overall = correlation_fitness(scores, truth, metric)
    if overall is None or within_weight == 0.0 or not strata:
        return overall
    if len(strata) != len(scores):
        raise ValueError(f"strata ({len(strata)}) and scores ({len(scores)}) differ in length")
    groups: dict[Hashable, list[int]] = {}
    for i, label in enumerate(strata):
        groups.setdefault(label, []).append(i)
    within = []
    for members in groups.values():
        inside = [truth[i] for i in members]
        if len(members) < 3 or len(set(inside)) < 2:
            continue  # nothing to rank inside this stratum
        value = correlation_fitness([scores[i] for i in members], inside, metric)
        within.append(0.0 if value is None else value)  # constant inside: ranks nothing there
    if not within:
        return overall
    return (1.0 - within_weight) * overall + within_weight * float(np.mean(within))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (``scipy.stats.rankdata``, but cheaper)."""
    order = np.argsort(x, kind="stable")
    boundaries = np.flatnonzero(np.diff(x[order])) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(x)]))
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def dynamic_prune(
    probe_scores: Sequence[float | None],
    probe_statuses: Sequence[str],
    probe_truth: Sequence[float],
    population_fitness: Sequence[float],
    config: SearchConfig,
) -> str | None:
    """Apply the dynamic rules (module docstring) to a candidate's probe-set results.

    Args:
        probe_scores: Score per probe architecture (None unless its status is "ok").
        probe_statuses: Status per probe architecture.
        probe_truth: Ground truth per probe architecture, oriented higher-is-better.
        population_fitness: Fitness of the population members at the start of the generation
            (non-finite values are ignored).
        config: Supplies ``rps``, ``fitness``, ``probe_margin`` and ``probe_min_population``.

    Returns:
        The rule that stops the candidate, or None to go on to the full fitness set.
    """
    if len(probe_truth) != len(probe_scores):
        raise ValueError(
            f"probe scores ({len(probe_scores)}) and truth ({len(probe_truth)}) differ in length"
        )
    rule = hard_failure(probe_scores, probe_statuses)
    if rule in ("error", "nonfinite") or (rule is not None and config.rps):
        return rule
    if not config.rps:
        return None
    fitness = [f for f in population_fitness if math.isfinite(f)]
    if len(fitness) < config.probe_min_population or len(probe_scores) < 2:
        return None
    probe = correlation_fitness(
        [float(v) for v in probe_scores if v is not None], probe_truth, config.fitness
    )
    if probe is not None and probe < float(np.median(fitness)) - config.probe_margin:
        return "probe_far_below"
    return None


def rule_status(rule: str) -> str:
    """The evaluation status recorded for a candidate stopped by ``rule``.

    Provably constant rules and ``all_identical`` give "constant"; ``error`` and ``nonfinite`` give
    themselves; ``constant_branch``, ``duplicate`` and ``probe_far_below`` give "pruned".

    Raises:
        ValueError: for an unknown rule name.
    """
    if rule in PROVABLY_CONSTANT_RULES or rule == "all_identical":
        return "constant"
    if rule in ("error", "nonfinite"):
        return rule
    if rule in ("constant_branch", "duplicate", "probe_far_below"):
        return "pruned"
    valid = ", ".join(STATIC_RULES + DYNAMIC_RULES)
    raise ValueError(f"unknown pruning rule {rule!r}; valid: {valid}")
