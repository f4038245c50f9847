"""ZBL universal screened nuclear repulsion (Ziegler, Biersack, Littmark 1985), in eV and Å."""


import torch
from torch import nn

#: e² / (4π ε0) in eV·Å.
COULOMB_EV_A = 14.399645478425668
#: ZBL screening length prefactor 0.8854 a0, in Å.
ZBL_A0 = 0.46850
_COEF = (0.18175, 0.50986, 0.28022, 0.02817)
_EXP = (3.19980, 0.94229, 0.40290, 0.20162)


class ZBL(nn.Module):
    """Per ordered pair: ½ E_ZBL(r) · u(r / r_c), so a pair counted twice adds E_ZBL once.

    ``forward(r, z_i, z_j, envelope)`` takes distances (Å), atomic numbers (as floats) and the
    cutoff envelope values, and returns the per-pair energy (eV) in float64.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("coef", torch.tensor(_COEF, dtype=torch.float64))
        self.register_buffer("expo", torch.tensor(_EXP, dtype=torch.float64))
        self.a0 = ZBL_A0
        self.ke = COULOMB_EV_A

    def forward(self, r: torch.Tensor, z_i: torch.Tensor, z_j: torch.Tensor, envelope: torch.Tensor) -> torch.Tensor:
        r = r.to(torch.float64)
        a = self.a0 / (torch.pow(z_i, 0.23) + torch.pow(z_j, 0.23))
        x = (r / a).unsqueeze(-1)
        phi = (self.coef * torch.exp(-self.expo * x)).sum(-1)
        return 0.5 * self.ke * z_i * z_j / r * phi * envelope.to(torch.float64)
