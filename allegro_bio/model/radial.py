"""Radial basis: Bessel functions of r/r_c times a smooth polynomial cutoff envelope."""


import math

import torch
from torch import nn


class PolynomialEnvelope(nn.Module):
    """u(x) = 1 − (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) − p(p+1)/2 x^(p+2) for x < 1, else exactly 0.

    ``x = r / r_c`` is dimensionless. u(0) = 1 and u, u', u'' vanish at x = 1.
    """

    def __init__(self, p: int = 6) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p
        xp = torch.pow(x, p)
        u = 1.0 - 0.5 * (p + 1.0) * (p + 2.0) * xp + p * (p + 2.0) * xp * x - 0.5 * p * (p + 1.0) * xp * x * x
        return torch.where(x < 1.0, u, torch.zeros_like(u))


class BesselBasis(nn.Module):
    """B_n(x) = √2 sin(f_n x) / x with f_n initialised to nπ, one set per ordered species pair.

    Input ``x = r / r_c(Z_i, Z_j)`` (dimensionless) and the edge type index ``t_i * T + t_j``.
    """

    def __init__(self, num_basis: int, num_edge_types: int, trainable: bool = True) -> None:
        super().__init__()
        freqs = math.pi * torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype())
        freqs = freqs.unsqueeze(0).repeat(num_edge_types, 1)
        if trainable:
            self.freqs = nn.Parameter(freqs)
        else:
            self.register_buffer("freqs", freqs)

    def forward(self, x: torch.Tensor, edge_type: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(-1)
        return math.sqrt(2.0) * torch.sin(self.freqs[edge_type] * x) / x
