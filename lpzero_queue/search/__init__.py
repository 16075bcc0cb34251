"""Search: genotypes, variation, selection, rule-based pruning and deterministic generations."""

from lpzero_queue.search.config import SearchConfig
from lpzero_queue.search.generation import (
    Candidate,
    merge_generation,
    plan_generation,
    plan_initial,
)
from lpzero_queue.search.genotype import Genotype, random_genotype
from lpzero_queue.search.pruning import PruneDecision, dynamic_prune, static_prune
from lpzero_queue.search.selection import Member, select_parents

__all__ = [
    "Candidate",
    "Genotype",
    "Member",
    "PruneDecision",
    "SearchConfig",
    "dynamic_prune",
    "merge_generation",
    "plan_generation",
    "plan_initial",
    "random_genotype",
    "select_parents",
    "static_prune",
]
