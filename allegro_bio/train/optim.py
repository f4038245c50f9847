"""Exponential moving average of weights and sharpness-aware minimisation (SAM)."""

from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn


def _copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (AllegroPotential holds TorchScript functions that deepcopy cannot copy)."""
    from ..model import AllegroPotential, clone

    if isinstance(model, AllegroPotential):
        device = next(model.parameters()).device
        return clone(model).to(device)
    return copy.deepcopy(model)


class EMA:
    """Exponential moving average of a model's parameters, held in a second model.

    After each optimiser step, ``update()`` sets θ_ema ← d θ_ema + (1 − d) θ with
    d = min(decay, (1 + n) / (10 + n)) for the n-th update (the warm-up makes early averages
    follow the fast-moving weights). ``model`` (the average) is what validation and the
    deployed file use. Buffers are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float = 0.99) -> None:
        self.decay = float(decay)
        self.model = _copy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.num_updates = 0

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        for p_ema, p in zip(self.model.parameters(), model.parameters()):
            p_ema.mul_(d).add_(p.detach().to(p_ema.dtype), alpha=1.0 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)
        self.num_updates += 1

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.num_updates = int(state["num_updates"])
        self.decay = float(state["decay"])


class SAM:
    """Sharpness-aware minimisation (Foret et al. 2021; Allegro-Legato, Ibayashi et al. 2023) around
    a base optimiser.

    One step is two gradient evaluations: ``first_step()`` moves the weights to
    θ + ε with ε = ρ g / ‖g‖ (g the current gradient, ‖·‖ the global 2-norm); the caller then
    recomputes the loss and its gradient there; ``second_step()`` restores θ and lets the base
    optimiser step with that gradient.
    """

    def __init__(self, params: Iterable[nn.Parameter], base: torch.optim.Optimizer, rho: float = 0.005) -> None:
        if rho <= 0:
            raise ValueError(f"SAM needs rho > 0, got {rho}")
        self.params = [p for p in params if p.requires_grad]
        self.base = base
        self.rho = float(rho)
        self._eps: list[torch.Tensor | None] = []

    @property
    def param_groups(self):
        return self.base.param_groups

    @torch.no_grad()
    def first_step(self) -> float:
        """Perturb the weights by ρ g/‖g‖; returns ‖g‖."""
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.norm(torch.stack([g.detach().to(torch.float64).norm(2) for g in grads]), 2) if grads else torch.tensor(0.0)
        scale = self.rho / (float(norm) + 1e-12)
        self._eps = []
        for p in self.params:
            if p.grad is None:
                self._eps.append(None)
                continue
            e = p.grad.detach() * scale
            p.add_(e)
            self._eps.append(e)
        return float(norm)

    @torch.no_grad()
    def second_step(self) -> None:
        """Undo the perturbation and step the base optimiser with the gradient at θ + ε."""
        for p, e in zip(self.params, self._eps):
            if e is not None:
                p.sub_(e)
        self._eps = []
        self.base.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return self.base.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.base.load_state_dict(state)
