"""The configuration of one genetic-programming search run (docs/method.md sections 5 and 6).

A run is a pure function of its resolved :class:`SearchConfig` and seed, so the configuration is
frozen, validated when it is built (a bad value fails with one line naming the key and the valid
values) and serialised to JSON with the run (:meth:`SearchConfig.to_dict`).

This module imports neither torch nor the operator registry: the CLI can parse a configuration
without paying for them (input names are checked lazily, only when ``inputs`` is given).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["FITNESS_METRICS", "REPLACEMENTS", "SELECTIONS", "SPLITS", "SearchConfig"]

SELECTIONS: tuple[str, ...] = ("truncation", "tournament")
REPLACEMENTS: tuple[str, ...] = ("if_better", "always")
FITNESS_METRICS: tuple[str, ...] = ("spearman", "kendall")
SPLITS: tuple[str, ...] = ("sample", "first")

_PROBABILITIES = ("crossover_p", "mutation_p", "mutation_apply_p", "within_weight")
_CHOICES: dict[str, tuple[str, ...]] = {
    "selection": SELECTIONS,
    "replacement": REPLACEMENTS,
    "fitness": FITNESS_METRICS,
    "split": SPLITS,
}
# Integer knobs and their lower bound.
_MIN_INT: dict[str, int] = {
    "population": 2,
    "children": 0,
    "per_generation": 1,
    "unary_per_branch": 0,
    "tournament_size": 2,
    "probe_size": 0,
    "probe_min_population": 1,
    "sample": 3,
    "seed": 0,
    "max_draws_factor": 1,
    "select_top": 1,
}
_OPTIONAL_POSITIVE_INT = ("batch_size", "seq_len")
# Probe architectures when the configuration does not say: this many, or the whole search split
# when it is smaller (a probe needs at least 3, as the search split does).
DEFAULT_PROBE_SIZE = 10
_OPTIONAL_STR = ("builder", "objective", "linear_scope")


@dataclass(frozen=True)
class SearchConfig:
    """Every knob of a search run; defaults follow the published LPZero search.

    Attributes are documented inline; see docs/method.md section 5 for the published values.
    """

    population: int = 80
    children: int = 1000  # total children after the initial population (published iterations)
    # Children evaluated together per generation: the unit of fan-out to workers. Each is planned
    # from the population as it stood at the start of the generation.
    per_generation: int = 40
    unary_per_branch: int = 2  # k: unary operators per branch (search space ~2e7 with k = 2)
    # "truncation": two distinct parents uniformly from the top half by fitness (published);
    # "tournament": each parent is the best of `tournament_size` members drawn without replacement.
    selection: Literal["truncation", "tournament"] = "truncation"
    tournament_size: int = 4
    crossover_p: float = 0.5  # per gene: probability of taking the gene from the second parent
    mutation_p: float = 0.5  # per gene: probability of resampling it (may draw the same value)
    mutation_apply_p: float = 0.5  # per child: probability that mutation is applied at all
    # Implicit elitism. "if_better": a child replaces the current worst member only if its fitness
    # is strictly higher, so the best member is never lost and the population never gets worse;
    # "always": the worst member is replaced unconditionally (steady-state GP without the check).
    replacement: Literal["if_better", "always"] = "if_better"
    fitness: Literal["spearman", "kendall"] = "spearman"  # signed; higher ranks better
    # Weight w of the within-depth term: fitness = (1 - w) * overall + w * mean correlation inside
    # depth strata (FlexiBERT: layer count; GPT-2: groups of 3 depths). 0: the published fitness.
    within_weight: float = 0.0
    rps: bool = True  # rule-based pruning; False: only hard failures are recorded, nothing skipped
    # Probe set: the first `probe_size` architectures of the fitness sample, scored first (their
    # scores are reused for the full fitness). 0 disables the probe stage.
    probe_size: int = DEFAULT_PROBE_SIZE  # from_dict without it: min(this, sample)
    # A candidate stops when its probe correlation < median(population fitness) - probe_margin.
    # A Spearman rho on 10 architectures has a standard error of about 1/sqrt(9) = 0.33, so 0.3
    # stops only candidates about one standard error below the middle of the population.
    probe_margin: float = 0.3
    probe_min_population: int = 10  # the probe rule needs this many members with a fitness
    sample: int = 50  # architectures in the fitness sample (the search split)
    # Model selection: the `select_top` best members of the final population (by fitness) are
    # scored on `validation` further architectures (drawn from the rest with the run seed, never
    # in the test split) and the best there is the run's result. 0: the best fitness wins
    # (published). 50 / 40: in an exhaustive study over 8 splits of FlexiBERT (not the reported
    # seeds) picking on 50 validation architectures raised the held-out tie-fair Kendall of the
    # chosen expression from 0.703 to 0.721; the best on its own 50 fitting ones overfits them.
    # None: resolved when the run is created to min(50, (benchmark size - sample) // 4), and 0
    # when that is below 3 (a small benchmark keeps its architectures for the test split).
    validation: int | None = None
    select_top: int = 40
    split: Literal["sample", "first"] = "sample"  # "first": the first `sample` (as published)
    seed: int = 0  # run seed: SeedSequence([seed, generation, slot]) drives every individual
    builder: str | None = None  # model builder; None: the benchmark's default
    objective: str | None = None  # loss of the backward pass; None: the benchmark's default
    # Linears feeding weight/grad ("mixer" or "all"); None: the benchmark's default. A stored run
    # config without this key predates it and used "mixer".
    linear_scope: str | None = None
    batch_size: int | None = None  # None: the benchmark's default
    seq_len: int | None = None  # None: the benchmark's default
    inputs: tuple[str, ...] | None = None  # input names genes may take; None: every input
    # Reductions over layer pairs the GP may choose ("mean" published, "total" = sum, which keeps
    # depth). ("mean",) = the published search space: genotypes carry no reduce gene. Default both:
    # on FlexiBERT (seed 0 / 1) the held-out Kendall rose from 0.520 / 0.488 to 0.710 / 0.688.
    reductions: tuple[str, ...] = ("mean", "total")
    # A generation stops drawing after per_generation * max_draws_factor statically pruned or
    # valid draws (a converged population yields mostly duplicates); it then has fewer children.
    max_draws_factor: int = 50

    def __post_init__(self) -> None:
        for key, low in _MIN_INT.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(
                    f"invalid search setting '{key}': {value!r}; valid: integer >= {low}"
                )
        for key in _PROBABILITIES:
            value = getattr(self, key)
            if not _is_real(value) or not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"invalid search setting '{key}': {value!r}; valid: number in [0, 1]"
                )
        for key, choices in _CHOICES.items():
            value = getattr(self, key)
            if value not in choices:
                valid = ", ".join(choices)
                raise ValueError(f"invalid search setting '{key}': {value!r}; valid: {valid}")
        if not isinstance(self.rps, bool):
            raise ValueError(f"invalid search setting 'rps': {self.rps!r}; valid: true, false")
        if not _is_real(self.probe_margin) or not 0.0 <= self.probe_margin < math.inf:
            raise ValueError(
                f"invalid search setting 'probe_margin': {self.probe_margin!r}; "
                "valid: finite number >= 0"
            )
        if self.validation is not None and (
            isinstance(self.validation, bool)
            or not isinstance(self.validation, int)
            or (self.validation != 0 and self.validation < 3)
        ):
            raise ValueError(
                f"invalid search setting 'validation': {self.validation!r}; "
                "valid: null (automatic), 0 (no model selection) or an integer >= 3"
            )
        if self.probe_size != 0 and not 3 <= self.probe_size <= self.sample:
            raise ValueError(
                f"invalid search setting 'probe_size': {self.probe_size!r}; "
                f"valid: 0 (no probe stage) or an integer in [3, sample={self.sample}]"
            )
        for key in _OPTIONAL_POSITIVE_INT:
            value = getattr(self, key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(
                    f"invalid search setting '{key}': {value!r}; valid: null or integer >= 1"
                )
        for key in _OPTIONAL_STR:
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(
                    f"invalid search setting '{key}': {value!r}; valid: null or a non-empty name"
                )
        if self.inputs is not None:
            self._check_inputs()
        self._check_reductions()

    def _check_reductions(self) -> None:
        value = self.reductions
        if value in (("mean",), ("mean", "total")):  # valid: no need to import the registry
            return
        from lpzero_queue.proxies.operators import REDUCTIONS  # lazy: imports torch

        ok = isinstance(value, tuple | list) and not isinstance(value, str)
        if ok:
            object.__setattr__(self, "reductions", tuple(value))
            ok = bool(value) and len(set(value)) == len(value) and set(value) <= set(REDUCTIONS)
        if not ok:
            raise ValueError(
                f"invalid search setting 'reductions': {value!r}; valid: a non-empty list of "
                f"distinct names from {', '.join(REDUCTIONS)}"
            )

    def _check_inputs(self) -> None:
        from lpzero_queue.proxies.operators import INPUT_NAMES  # lazy: imports torch

        inputs = self.inputs
        if isinstance(inputs, str) or not isinstance(inputs, tuple | list):
            raise ValueError(
                f"invalid search setting 'inputs': {inputs!r}; valid: null or a list of "
                f"distinct names from {', '.join(INPUT_NAMES)}"
            )
        object.__setattr__(self, "inputs", tuple(inputs))  # accept a list, store a tuple
        unknown = [i for i in inputs if i not in INPUT_NAMES]
        if not inputs or len(set(inputs)) != len(inputs) or unknown:
            raise ValueError(
                f"invalid search setting 'inputs': {list(inputs)!r}; valid: null or a non-empty "
                f"list of distinct names from {', '.join(INPUT_NAMES)}"
            )

    def validation_for(self, n_archs: int) -> int:
        """The validation split size for a benchmark of ``n_archs`` (resolves None)."""
        if self.validation is not None:
            return self.validation
        size = min(50, (n_archs - self.sample) // 4)
        return size if size >= 3 else 0

    @property
    def generations(self) -> int:
        """Number of child generations (1-based; generation 0 is the initial population)."""
        return -(-self.children // self.per_generation)

    def children_in(self, generation: int) -> int:
        """How many children generation ``generation`` (>= 1) plans; the last one may be short.

        Raises:
            ValueError: if ``generation`` is outside ``1..generations``.
        """
        if not 1 <= generation <= self.generations:
            raise ValueError(f"generation must be in 1..{self.generations}, got {generation}")
        return min(self.per_generation, self.children - (generation - 1) * self.per_generation)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-compatible dict (every key, defaults included)."""
        out = dataclasses.asdict(self)
        out["inputs"] = None if self.inputs is None else list(self.inputs)
        out["reductions"] = list(self.reductions)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchConfig:
        """Build a configuration from a (JSON) mapping; missing keys take their defaults.

        A missing ``probe_size`` follows ``sample``: ``min(DEFAULT_PROBE_SIZE, sample)``.

        Raises:
            ValueError: one line naming an unknown key (with the valid keys) or an invalid value
                (with the valid values).
        """
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                raise ValueError(
                    f"unknown search setting {key!r}; valid settings: {', '.join(known)}"
                )
        values = dict(data)
        sample = values.get("sample", cls.sample)
        if "probe_size" not in values and _is_real(sample):
            values["probe_size"] = min(DEFAULT_PROBE_SIZE, sample)
        for key in ("inputs", "reductions"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
