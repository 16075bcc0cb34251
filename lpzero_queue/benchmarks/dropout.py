"""Dropout whose masks come from the CPU generator on every device.

``nn.Dropout`` draws its mask from the generator of the device the activation lives on, and a
CUDA generator gives other numbers than the CPU one for the same seed: the same seeded model
scored on a GPU worker saw other masks than on a CPU worker, so a proxy's score depended on
which worker took the task. :class:`HostDrawnDropout` draws the mask with exactly the calls of
torch's CPU kernel (``at::native::_dropout``: ``empty_like(x).bernoulli_(1 - p)``, ``div_(1 - p)``,
``x * noise``) on the CPU default generator, then moves it to the activation's device. On the CPU
it is therefore bit-identical to ``nn.Dropout``; on any other device it applies the same mask.
Seeding is the caller's business (proxy extraction forks and seeds the CPU generator).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["HostDrawnDropout", "host_drawn_dropout"]


def host_drawn_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout(x, p, training)`` with the mask drawn from the CPU default generator.

    Args:
        x: The activation, on any device.
        p: Probability of zeroing an element.
        training: Apply dropout (False returns ``x`` itself, as ``F.dropout`` does).

    Returns:
        ``x * mask / (1 - p)`` with ``mask`` a function of the CPU generator's state only.
    """
    if not training or p == 0.0 or x.numel() == 0:
        return x
    if p == 1.0:
        return x * torch.zeros((), dtype=x.dtype, device=x.device)
    noise = torch.empty(x.shape, dtype=x.dtype, device="cpu").bernoulli_(1.0 - p)
    noise.div_(1.0 - p)
    return x * noise.to(x.device, non_blocking=True)


class HostDrawnDropout(nn.Dropout):
    """``nn.Dropout`` drawing its masks on the CPU (see the module docstring)."""

    def forward(self, input: Tensor) -> Tensor:
        """Apply dropout in train mode; identity in eval mode."""
        if self.inplace:
            raise ValueError("HostDrawnDropout does not support inplace=True")
        return host_drawn_dropout(input, self.p, self.training)
