"""Recursive-descent parser for the canonical text form of proxy expressions.

Grammar (whitespace allowed between tokens)::

    expression := REDUCTION "(" call ")" END | call END
    call       := BINARY "(" branch "," branch ")"
    branch     := UNARY "(" branch ")" | INPUT

``REDUCTION`` is a reduction other than the default ``mean`` (today only ``total``): the published
reduction is written without a wrapper, so every expression has exactly one text form.

The parser is hand-written (no ``eval``); branches are read iteratively, so arbitrarily deep unary
chains cannot exhaust the Python stack. It only knows names from the operator registry and returns
a plain structure; :func:`lpzero_queue.proxies.expression.parse_expression` builds the dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lpzero_queue.errors import clip
from lpzero_queue.proxies.operators import BINARY_OPS, INPUT_NAMES, REDUCTIONS, UNARY_OPS

RawBranch = tuple[str, tuple[str, ...]]  # (input name, unary ops in application order)
RawExpression = tuple[str, str, RawBranch, RawBranch]  # (reduction, binary op, left, right)

DEFAULT_REDUCTION = REDUCTIONS[0]  # "mean", as published: never written as a wrapper
WRAPPER_REDUCTIONS: tuple[str, ...] = tuple(r for r in REDUCTIONS if r != DEFAULT_REDUCTION)


class ExpressionSyntaxError(ValueError):
    """A proxy expression text that cannot be parsed.

    Attributes:
        position: 0-based character offset of the problem in the text (len(text) at its end).
        expected: What would have been accepted there (token texts or names).
    """

    def __init__(
        self, position: int, problem: str, expected: tuple[str, ...], *, list_expected: bool = True
    ) -> None:
        self.position = position
        self.expected = expected
        message = f"position {position}: {problem}"
        if expected and list_expected:
            message += f"; expected {_describe(expected)}"
        super().__init__(message)


def _describe(expected: tuple[str, ...]) -> str:
    if len(expected) == 1:
        return expected[0]
    return "one of: " + ", ".join(expected)


@dataclass(frozen=True)
class _Token:
    kind: Literal["name", "(", ")", ",", "end"]
    text: str
    position: int


def _is_name_start(ch: str) -> bool:
    return ch == "_" or ("a" <= ch <= "z") or ("A" <= ch <= "Z")


def _is_name_char(ch: str) -> bool:
    return _is_name_start(ch) or ("0" <= ch <= "9")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "(),":
            tokens.append(_Token(ch, ch, i))  # type: ignore[arg-type]
            i += 1
        elif _is_name_start(ch):
            start = i
            while i < n and _is_name_char(text[i]):
                i += 1
            tokens.append(_Token("name", text[start:i], start))
        else:
            # ascii() keeps the message on one line whatever the character is.
            raise ExpressionSyntaxError(
                i, f"unexpected character {ch!a}", ("a name", "'('", "')'", "','")
            )
    tokens.append(_Token("end", "", n))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.index = 0

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        self.index += 1
        return token

    def expect(self, kind: Literal["(", ")", ","]) -> _Token:
        token = self.peek()
        if token.kind != kind:
            found = "end of input" if token.kind == "end" else repr(token.text)
            raise ExpressionSyntaxError(
                token.position,
                f"expected '{kind}', found {found}",
                (f"'{kind}'",),
                list_expected=False,
            )
        return self.take()

    def expression(self) -> RawExpression:
        outer = tuple(sorted((*BINARY_OPS, *WRAPPER_REDUCTIONS)))
        token = self.peek()
        reduction = DEFAULT_REDUCTION
        if token.kind == "name" and token.text in WRAPPER_REDUCTIONS:
            reduction = token.text
            self.take()
            self.expect("(")
            binary, left, right = self.call(tuple(sorted(BINARY_OPS)), inside=reduction)
            if self.peek().kind == ",":
                raise ExpressionSyntaxError(
                    self.peek().position,
                    f"reduction {reduction!r} takes exactly one argument",
                    ("')'",),
                )
            self.expect(")")
        else:
            binary, left, right = self.call(outer, inside=None)
        end = self.peek()
        if end.kind != "end":
            raise ExpressionSyntaxError(
                end.position, f"unexpected trailing text starting {end.text!r}", ("end of input",)
            )
        return reduction, binary, left, right

    def call(
        self, expected: tuple[str, ...], inside: str | None
    ) -> tuple[str, RawBranch, RawBranch]:
        """Read ``BINARY "(" branch "," branch ")"``; ``inside`` names an enclosing reduction."""
        token = self.peek()
        where = "the outermost call" if inside is None else f"the argument of {inside!r}"
        if token.kind == "end":
            problem = "empty expression" if inside is None else "expected a binary operator"
            raise ExpressionSyntaxError(token.position, problem, expected)
        if token.kind != "name":
            raise ExpressionSyntaxError(token.position, f"unexpected {clip(token.text)}", expected)
        if token.text not in BINARY_OPS:
            called = self.peek(1).kind == "("
            if token.text in WRAPPER_REDUCTIONS:
                what = f"reduction {clip(token.text)} can only be the outermost call"
            elif token.text == DEFAULT_REDUCTION and called and inside is None:
                what = (
                    f"unary operator {clip(token.text)} cannot be the outermost call (the default "
                    f"reduction {DEFAULT_REDUCTION!r} is written without a wrapper)"
                )
            elif token.text in UNARY_OPS and (called or token.text not in INPUT_NAMES):
                what = f"unary operator {clip(token.text)} cannot be {where}"
            elif token.text in INPUT_NAMES:
                what = f"input {clip(token.text)} cannot be {where}"
            elif inside is None:
                what = f"unknown binary operator or reduction {clip(token.text)}"
            else:
                what = f"unknown binary operator {clip(token.text)}"
            raise ExpressionSyntaxError(token.position, what, expected)
        self.take()
        self.expect("(")
        left = self.branch()
        if self.peek().kind == ")":
            raise ExpressionSyntaxError(
                self.peek().position,
                f"binary operator {clip(token.text)} takes two arguments",
                ("','",),
            )
        self.expect(",")
        right = self.branch()
        if self.peek().kind == ",":
            raise ExpressionSyntaxError(
                self.peek().position,
                f"binary operator {clip(token.text)} takes exactly two arguments",
                ("')'",),
            )
        self.expect(")")
        return token.text, left, right

    def branch(self) -> RawBranch:
        calls: list[str] = []
        name = ""
        while True:
            token = self.peek()
            if token.kind != "name":
                found = "end of input" if token.kind == "end" else repr(token.text)
                raise ExpressionSyntaxError(
                    token.position,
                    f"expected a unary operator or an input, found {found}",
                    (*sorted(UNARY_OPS), *INPUT_NAMES),
                )
            name = token.text
            called = self.peek(1).kind == "("
            if name in BINARY_OPS:
                raise ExpressionSyntaxError(
                    token.position,
                    f"binary operator {clip(name)} is only allowed as the outermost call "
                    "(or as the argument of a reduction)",
                    (*sorted(UNARY_OPS), *INPUT_NAMES),
                )
            if name in WRAPPER_REDUCTIONS:
                raise ExpressionSyntaxError(
                    token.position,
                    f"reduction {clip(name)} is only allowed as the outermost call",
                    (*sorted(UNARY_OPS), *INPUT_NAMES),
                )
            # `softmax` is an input and an operator: a call is the operator, a bare name the input.
            if called:
                if name not in UNARY_OPS:
                    if name in INPUT_NAMES:
                        raise ExpressionSyntaxError(
                            token.position, f"input {clip(name)} cannot be called", ("','", "')'")
                        )
                    raise ExpressionSyntaxError(
                        token.position, f"unknown operator {clip(name)}", tuple(sorted(UNARY_OPS))
                    )
                self.take()
                self.take()  # the "("
                calls.append(name)
                continue
            if name in UNARY_OPS and name not in INPUT_NAMES:
                raise ExpressionSyntaxError(
                    self.peek(1).position,
                    f"unary operator {clip(name)} needs an argument",
                    ("'('",),
                )
            if name not in INPUT_NAMES:
                raise ExpressionSyntaxError(
                    token.position, f"unknown input {clip(name)}", INPUT_NAMES
                )
            self.take()
            break
        input_name = name
        for name in reversed(calls):
            if self.peek().kind == ",":
                raise ExpressionSyntaxError(
                    self.peek().position,
                    f"unary operator {clip(name)} takes exactly one argument",
                    ("')'",),
                )
            self.expect(")")
        return input_name, tuple(reversed(calls))


def parse_raw(text: str) -> RawExpression:
    """Parse expression text into ``(reduction, binary, (input, unary_ops), (input, unary_ops))``.

    Args:
        text: Expression in function-call notation; any whitespace between tokens.

    Returns:
        The reduction (``"mean"`` when the text has no wrapper), the binary operator name and the
        two branches, unary operators in application order.

    Raises:
        ExpressionSyntaxError: on any malformed text, with the 0-based position of the problem.
    """
    if not isinstance(text, str):
        raise TypeError(f"expression text must be str, got {type(text).__name__}")
    return _Parser(text).expression()
