"""Bias-free MLPs with variance-normalised SiLU (so an input of zero maps to zero)."""


import math

import torch
from e3nn.math import normalize2mom
from torch import nn

#: 1 / sqrt(E[silu(z)^2]) for z ~ N(0, 1): keeps activations at unit second moment.
SILU_NORM = float(normalize2mom(torch.nn.functional.silu).cst)


class ScalarMLP(nn.Module):
    """Linear → SiLU → … → Linear, no biases, weights N(0, 1/fan_in).

    Without biases and with SiLU(0) = 0, the MLP maps 0 to 0: features that vanish at the
    cutoff stay vanished, which keeps the potential smooth and strictly local.
    """

    def __init__(self, dims: list[int], final_activation: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for k, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            lin = nn.Linear(d_in, d_out, bias=False)
            nn.init.normal_(lin.weight, std=1.0 / math.sqrt(d_in))
            layers.append(lin)
            if k < len(dims) - 2 or final_activation:
                layers.append(_NormalizedSiLU())
        self.net = nn.Sequential(*layers)
        self.dims = list(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def linear_rows(self, x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        """A one-layer MLP's outputs in another order: column q is output ``perm[q]`` (the small
        weight's rows are permuted, not the [P, width] output)."""
        return torch.nn.functional.linear(x, self.net[0].weight.index_select(0, perm))

    def forward_permuted(self, x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        """The MLP applied to input columns in another order: column q of ``x`` is the feature
        the first layer's weight expects at column ``perm[q]``. Permuting the small weight
        instead of the [P, width] input saves a copy of the input."""
        h = torch.nn.functional.linear(x, self.net[0].weight.index_select(1, perm))
        k = 0
        for layer in self.net:
            if k > 0:
                h = layer(h)
            k += 1
        return h


class _NormalizedSiLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = SILU_NORM

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.silu(x) * self.norm
