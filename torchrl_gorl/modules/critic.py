"""The state-value network V_psi(s) used by latent PPO."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict.utils import NestedKey
from torch import nn
from torchrl.modules import ValueOperator

from torchrl_gorl.modules._utils import check_last_dim, check_positive, lecun_uniform_, make_mlp


class ValueNetwork(nn.Module):
    """``observation -> V(s)``: [normaliser] -> MLP with one output."""

    def __init__(
        self,
        observation_dim: int,
        *,
        num_cells: Sequence[int] = (256,) * 5,
        activation_class: type[nn.Module] = nn.SiLU,
        observation_norm: nn.Module | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        check_positive(observation_dim=observation_dim)
        self.observation_dim = observation_dim
        self.observation_norm = observation_norm
        self.mlp = make_mlp(observation_dim, 1, num_cells, activation_class, device)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        check_last_dim(observation, self.observation_dim, "observation")
        if self.observation_norm is not None:
            observation = self.observation_norm(observation)
        return self.mlp(observation)

    def reset_parameters(self) -> None:
        """LeCun-uniform weights, zero biases (called last by ``reset_parameters_recursive``)."""
        lecun_uniform_(self.mlp)


def make_value_network(
    observation_dim: int,
    *,
    num_cells: Sequence[int] = (256,) * 5,
    activation_class: type[nn.Module] = nn.SiLU,
    observation_norm: nn.Module | None = None,
    observation_key: NestedKey = "observation",
    device: torch.device | str | None = None,
) -> ValueOperator:
    """Builds the critic as a :class:`~torchrl.modules.ValueOperator` writing ``"state_value"``.

    Defaults follow the reference critic: 5 hidden layers of 256 with SiLU and LeCun-uniform init.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> critic = make_value_network(17, num_cells=(64, 64))
        >>> critic(TensorDict(observation=torch.randn(5, 17), batch_size=[5]))["state_value"].shape
        torch.Size([5, 1])
    """
    network = ValueNetwork(
        observation_dim,
        num_cells=num_cells,
        activation_class=activation_class,
        observation_norm=observation_norm,
        device=device,
    )
    return ValueOperator(network, in_keys=[observation_key])
