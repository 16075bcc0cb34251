"""Proxy inputs from a transformers ``LlamaForCausalLM``: Tap markers put on by hooks.

:func:`lpzero_queue.proxies.inputs.extract_inputs` reads a model through its
:class:`~lpzero_queue.benchmarks.taps.Tap` markers and ``mixer_linears()``. :class:`LlamaTapped`
wraps a LLaMA model without changing its weights or state-dict keys; forward hooks pass the
tensors through Tap modules, so the same extraction and expression evaluation score it:

* ``act``: the output of each layer's MLP activation (``act_fn(gate_proj(x))``, before the
  up-projection product);
* ``head``: each layer's ``q_proj`` output;
* ``softmax``: each layer's attention probabilities (eager attention returns them);
* ``embedding``: the token-embedding output (``jacobs``);
* ``weight``/``grad``: the q, k, v and o projections of every layer (the token-mixing Linears,
  scope ``mixer``), or those and the gate, up and down projections (scope ``all``).

The gradient objective is the next-token loss (``lm``) on a batch of the shipped text, as for
GPT-2; every parameter gets a gradient for that one pass, whatever was frozen before.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from lpzero_queue.benchmarks.taps import Tap
from lpzero_queue.training.llama import LORA_TARGETS

__all__ = ["LINEAR_SCOPES", "LlamaTapped"]

LINEAR_SCOPES = ("mixer", "all")


def _unwrap(lin: nn.Module) -> nn.Linear:
    base = getattr(lin, "base", lin)  # a LoRALinear's frozen projection
    assert isinstance(base, nn.Linear)
    return base


class LlamaTapped(nn.Module):
    """A LLaMA causal LM with Tap markers on its proxy inputs.

    Args:
        model: A ``LlamaForCausalLM`` with eager attention (possibly a sub-network).
        linear_scope: ``mixer`` (attention projections) or ``all`` (attention and MLP).
    """

    def __init__(self, model: Any, linear_scope: str = "mixer") -> None:
        super().__init__()
        if linear_scope not in LINEAR_SCOPES:
            raise ValueError(f"unknown linear scope {linear_scope!r}; valid: mixer, all")
        self.model = model
        self.linear_scope = linear_scope
        self.embedding_tap = Tap("embedding")
        self.layer_taps = nn.ModuleList()
        self._handles: list[Any] = []
        inner: Any = model.model
        self._handles.append(
            inner.embed_tokens.register_forward_hook(self._through(self.embedding_tap))
        )
        for layer in inner.layers:
            head, softmax, act = Tap("head"), Tap("softmax"), Tap("act")
            self.layer_taps.append(nn.ModuleList([head, softmax, act]))
            attn, mlp = layer.self_attn, layer.mlp
            self._handles.append(attn.q_proj.register_forward_hook(self._through(head)))
            self._handles.append(attn.register_forward_hook(self._probs(softmax)))
            self._handles.append(mlp.act_fn.register_forward_hook(self._through(act)))

    @staticmethod
    def _through(tap: Tap) -> Any:
        def hook(_module: nn.Module, _args: Any, output: Tensor) -> Tensor:
            out: Tensor = tap(output)
            return out

        return hook

    @staticmethod
    def _probs(tap: Tap) -> Any:
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            if output[1] is None:
                raise RuntimeError(
                    "attention returned no probabilities: load it with eager attention"
                )
            tap(output[1])  # (B, heads, T, T)

        return hook

    def mixer_linears(self) -> list[nn.Linear]:
        """The Linears of the ``weight``/``grad`` inputs, layer by layer (see the scope)."""
        names = LORA_TARGETS if self.linear_scope == "all" else LORA_TARGETS[:4]
        out = []
        layers: Any = self.model.model.layers
        for layer in layers:
            for name in names:
                block = layer.self_attn if name in LORA_TARGETS[:4] else layer.mlp
                out.append(_unwrap(getattr(block, name)))
        return out

    def forward(self, input_ids: Tensor, labels: Tensor | None = None) -> Any:
        """``model(input_ids, labels=labels)``: the output has ``.loss`` when labels are given."""
        return self.model(input_ids=input_ids, labels=labels)

    def remove(self) -> None:
        """Take the hooks off the wrapped model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
