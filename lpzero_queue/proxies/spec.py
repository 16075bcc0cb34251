"""Proxy references: an expression with a direction, or a named built-in baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lpzero_queue.errors import LpzqError, clip
from lpzero_queue.proxies.expression import LPZERO_FLEXIBERT, LPZERO_GPT2, parse_expression
from lpzero_queue.proxies.parser import ExpressionSyntaxError

Direction = Literal["higher", "lower"]

# The published LPZero proxies, written in our expression language (docs/method.md section 8).
NAMED_EXPRESSIONS: dict[str, tuple[str, Direction]] = {
    "lpzero-gpt2": (LPZERO_GPT2, "lower"),
    "lpzero-flexibert": (LPZERO_FLEXIBERT, "higher"),
}
# Baselines every correlation report shows next to any proxy, on the same architectures.
# Free structural keys printed beside every proxy; the last two are lexicographic (depth, then
# width, then parameters): what a user ranks with at no cost at all.
TRIVIAL_BASELINES = (
    "params",
    "nonembedding_params",
    "n_layers",
    "layers_x_hidden",
    "depth_then_width",
    "depth_width_params",
)


@dataclass(frozen=True)
class ProxySpec:
    """A proxy as stored in the ``proxies`` table."""

    kind: Literal["expression", "builtin"]
    # Canonical expression text, or the built-in baseline's name.
    text: str
    direction: Direction
    name: str | None = None

    @property
    def label(self) -> str:
        """What tables print: the name when there is one, else the expression."""
        return self.name or self.text


def baseline_names() -> tuple[str, ...]:
    """Names of the built-in baselines (imports torch)."""
    from lpzero_queue.proxies.baselines import BASELINES

    return tuple(BASELINES)


def baseline_spec(name: str) -> ProxySpec:
    """The ProxySpec of a built-in baseline."""
    from lpzero_queue.proxies.baselines import BASELINES

    return ProxySpec("builtin", name, BASELINES[name].direction, name)


def resolve_proxy(text_or_name: str, direction: Direction | None = None) -> ProxySpec:
    """Turn what a user typed into a ProxySpec.

    Args:
        text_or_name: a baseline name, a named expression (``lpzero-gpt2``), or an expression.
        direction: required for a new expression; for names it must agree when given.

    Raises:
        LpzqError: unknown name, unparseable expression (with the position), or no direction.
    """
    text = text_or_name.strip()
    if text in NAMED_EXPRESSIONS:
        named, named_direction = NAMED_EXPRESSIONS[text]
        return ProxySpec("expression", named, direction or named_direction, text)
    if "(" not in text:
        names = baseline_names()
        if text in names:
            return baseline_spec(text)
        valid = ", ".join([*NAMED_EXPRESSIONS, *names])
        raise LpzqError(f"unknown proxy {clip(text)}; give an expression or one of: {valid}")
    try:
        expr = parse_expression(text)
    except ExpressionSyntaxError as exc:
        raise LpzqError(f"invalid expression: {exc}") from None
    if direction is None:
        raise LpzqError("say the expression's direction: --higher-is-better or --lower-is-better")
    return ProxySpec("expression", str(expr), direction)
