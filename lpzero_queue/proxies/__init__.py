"""Proxies: inputs, operators, expressions, evaluation, baselines, correlations and comparisons.

Exports resolve lazily (PEP 562) so importing this package does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpzero_queue._lazy import lazy_getattr

_EXPORTS = {
    "BINARY_OPS": "operators",
    "INPUT_NAMES": "operators",
    "UNARY_OPS": "operators",
    "Branch": "expression",
    "EvalResult": "expression",
    "Expression": "expression",
    "LPZERO_FLEXIBERT": "expression",
    "LPZERO_GPT2": "expression",
    "canonicalize": "expression",
    "evaluate": "expression",
    "evaluate_many": "expression",
    "format_expression": "expression",
    "is_provably_constant": "expression",
    "parse_expression": "expression",
    "ExpressionSyntaxError": "parser",
    "CorrelationReport": "correlation",
    "rank_correlations": "correlation",
    "InputsKey": "inputs",
    "ProxyInputs": "inputs",
    "compute_inputs": "inputs",
    "InputCache": "cache",
    "BASELINES": "baselines",
    "score_baselines": "baselines",
    "ProxySpec": "spec",
    "resolve_proxy": "spec",
    "ScoringSetup": "scoring",
    "WorkUnit": "scoring",
    "score_unit": "scoring",
    "Report": "comparison",
    "ReportRow": "comparison",
    "held_out_comparisons": "comparison",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


if TYPE_CHECKING:
    from lpzero_queue.proxies.baselines import BASELINES, score_baselines
    from lpzero_queue.proxies.cache import InputCache
    from lpzero_queue.proxies.comparison import Report, ReportRow, held_out_comparisons
    from lpzero_queue.proxies.correlation import CorrelationReport, rank_correlations
    from lpzero_queue.proxies.expression import (
        LPZERO_FLEXIBERT,
        LPZERO_GPT2,
        Branch,
        EvalResult,
        Expression,
        canonicalize,
        evaluate,
        evaluate_many,
        format_expression,
        is_provably_constant,
        parse_expression,
    )
    from lpzero_queue.proxies.inputs import InputsKey, ProxyInputs, compute_inputs
    from lpzero_queue.proxies.operators import BINARY_OPS, INPUT_NAMES, UNARY_OPS
    from lpzero_queue.proxies.parser import ExpressionSyntaxError
    from lpzero_queue.proxies.scoring import ScoringSetup, WorkUnit, score_unit
    from lpzero_queue.proxies.spec import ProxySpec, resolve_proxy
