"""Small building blocks shared by the GoRL modules."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torchrl.modules import MLP


def lecun_uniform_(module: nn.Module) -> nn.Module:
    """Re-initialises every ``nn.Linear`` of ``module`` with LeCun-uniform weights and zero biases.

    LeCun-uniform is ``U(-sqrt(3 / fan_in), sqrt(3 / fan_in))``, the JAX/Flax default the
    reference implementation relies on. PyTorch's default is narrower, hence the explicit call.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            bound = math.sqrt(3.0 / layer.in_features)
            nn.init.uniform_(layer.weight, -bound, bound)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module


def make_mlp(
    in_features: int,
    out_features: int,
    num_cells: Sequence[int],
    activation_class: type[nn.Module] = nn.SiLU,
    device: torch.device | str | None = None,
) -> MLP:
    """TorchRL :class:`~torchrl.modules.MLP` with LeCun-uniform init (the reference's networks)."""
    check_positive(in_features=in_features, out_features=out_features)
    check_num_cells(num_cells)
    mlp = MLP(
        in_features=in_features,
        out_features=out_features,
        num_cells=list(num_cells),
        activation_class=activation_class,
        device=device,
    )
    return lecun_uniform_(mlp)


def check_positive(**values: int) -> None:
    """Raises a ``ValueError`` naming the first argument that is not a positive integer."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def check_num_cells(num_cells: Sequence[int]) -> None:
    """Raises a ``ValueError`` naming the first hidden size that is not a positive integer."""
    check_positive(**{f"num_cells[{i}]": c for i, c in enumerate(num_cells)})


def check_last_dim(tensor: torch.Tensor, expected: int, name: str) -> None:
    """Raises a ``ValueError`` if the feature (last) dimension of ``tensor`` is not ``expected``."""
    if tensor.ndim == 0 or tensor.shape[-1] != expected:
        raise ValueError(
            f"{name} must have a last dimension of size {expected}, got shape {tuple(tensor.shape)}."
        )


def sinusoidal_time_embedding(t: torch.Tensor, num_frequencies: int) -> torch.Tensor:
    """``[cos(2^k t) for k < F] + [sin(2^k t) for k < F]`` along the last dimension.

    ``t`` has a trailing singleton dimension; the result has ``2 * num_frequencies`` features.
    All cosines come first, then all sines, as in the reference.
    """
    freqs = 2.0 ** torch.arange(num_frequencies, device=t.device, dtype=t.dtype)
    angles = t * freqs
    return torch.cat([angles.cos(), angles.sin()], dim=-1)
