"""What the flow and diffusion decoders share: the conditional network and the TensorDict contract."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.nn import dispatch, TensorDictModuleBase
from tensordict.utils import NestedKey
from torch import nn
from torch.nn import functional as F

from torchrl_gorl.modules._utils import (
    check_last_dim,
    check_num_cells,
    check_positive,
    lecun_uniform_,
    make_mlp,
    sinusoidal_time_embedding,
)
from torchrl_gorl.modules.normalization import ObservationNormalizer


class ConditionalDecoderNetwork(nn.Module):
    """MLP on ``[normalised observation, x_t, time embedding]`` returning a vector of the action size.

    The flow decoder reads its output as a velocity, the diffusion decoder as (the learned part
    of) a noise prediction. The first linear layer is applied as three slices of its weight
    rather than to a concatenated input: mathematically the same layer, but a sampler can then
    compute the observation term once per call and the time term once per step instead of
    re-concatenating at every step.

    Args:
        observation_dim (int): observation size.
        action_dim (int): action (and latent) size.

    Keyword Args:
        num_cells (sequence of int): hidden sizes. Defaults to ``(64, 64, 64, 64)``.
        activation_class (type): hidden activation. Defaults to SiLU.
        num_frequencies (int): time embedding ``[cos(2^k t), sin(2^k t)]``, ``k < num_frequencies``.
            Defaults to 4 (8 features).
    """

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        *,
        num_cells: Sequence[int] = (64, 64, 64, 64),
        activation_class: type[nn.Module] = nn.SiLU,
        num_frequencies: int = 4,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        check_positive(observation_dim=observation_dim, action_dim=action_dim, num_frequencies=num_frequencies)
        if len(num_cells) == 0:
            raise ValueError("num_cells must name at least one hidden layer, got an empty sequence.")
        check_num_cells(num_cells)
        self.observation_dim = observation_dim
        self.action_dim = action_dim
        self.num_frequencies = num_frequencies
        in_features = observation_dim + action_dim + 2 * num_frequencies
        self.input_layer = make_mlp(in_features, num_cells[0], (), activation_class, device)[0]
        self.trunk = nn.Sequential(
            activation_class(), make_mlp(num_cells[0], action_dim, num_cells[1:], activation_class, device)
        )

    @property
    def output_layer(self) -> nn.Linear:
        return self.trunk[-1][-1]

    def reset_parameters(self) -> None:
        """LeCun-uniform weights, zero biases (called last by ``reset_parameters_recursive``)."""
        lecun_uniform_(self)

    def condition(self, observation: torch.Tensor) -> torch.Tensor:
        """Observation term of the first layer (bias included), computed once per sampler call."""
        weight = self.input_layer.weight[:, : self.observation_dim]
        return F.linear(observation, weight, self.input_layer.bias)

    def time_features(self, t: torch.Tensor) -> torch.Tensor:
        """Time term of the first layer; ``t`` has a trailing singleton dimension."""
        weight = self.input_layer.weight[:, self.observation_dim + self.action_dim :]
        return F.linear(sinusoidal_time_embedding(t, self.num_frequencies), weight)

    def forward_features(self, condition: torch.Tensor, x: torch.Tensor, time_features: torch.Tensor) -> torch.Tensor:
        weight = self.input_layer.weight[:, self.observation_dim : self.observation_dim + self.action_dim]
        return self.trunk(condition + F.linear(x, weight) + time_features)

    def forward(self, observation: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``observation`` is already normalised; leading dimensions broadcast."""
        return self.forward_features(self.condition(observation), x, self.time_features(t))


class GenerativeDecoder(TensorDictModuleBase):
    """Base of the GoRL decoders ``a = g_phi(s, z)``: a deterministic map from (observation, latent) to action.

    Reads ``(observation_key, latent_key)`` and writes ``action_key``, the **pre-squash**
    action: squashing to the action bounds is a separate step (e.g.
    :class:`~torchrl_gorl.envs.TanhActionTransform` on the env), so the decoder dataset can
    store the pre-squash action the decoder regresses on. The observation is normalised with
    statistics held in :attr:`observation_norm` (buffers, part of the ``state_dict``).

    Subclasses implement :meth:`_sample`, the sampler started from the latent.
    """

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        *,
        num_cells: Sequence[int] = (64, 64, 64, 64),
        activation_class: type[nn.Module] = nn.SiLU,
        num_frequencies: int = 4,
        observation_key: NestedKey = "observation",
        latent_key: NestedKey = "latent",
        action_key: NestedKey = "action",
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.observation_dim = observation_dim
        self.action_dim = action_dim
        self.network = ConditionalDecoderNetwork(
            observation_dim,
            action_dim,
            num_cells=num_cells,
            activation_class=activation_class,
            num_frequencies=num_frequencies,
            device=device,
        )
        self.observation_norm = ObservationNormalizer(observation_dim).to(device)
        self.in_keys = [observation_key, latent_key]
        self.out_keys = [action_key]

    @classmethod
    def identity(cls, observation_dim: int, action_dim: int, **kwargs):
        """Builds a decoder whose output is exactly its latent input (GoRL's stage-0 decoder)."""
        return cls(observation_dim, action_dim, **kwargs).reset_to_identity()

    @torch.no_grad()
    def reset_to_identity(self):
        """Zeroes the output layer, so the learned term is exactly 0 and ``decode(s, z) == z``.

        Only the output layer is zeroed (the reference zeroes every weight): the result is the
        same exact identity, and the hidden layers keep a random init should the decoder be
        fine-tuned from here. Observation statistics go back to ``loc = 0, scale = 1``.
        """
        nn.init.zeros_(self.network.output_layer.weight)
        nn.init.zeros_(self.network.output_layer.bias)
        self.observation_norm.reset()
        return self

    def decode(self, observation: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Plain-tensor decoding: ``(observation [..., obs_dim], latent [..., action_dim]) -> action``."""
        check_last_dim(observation, self.observation_dim, "observation")
        check_last_dim(latent, self.action_dim, "latent")
        return self._sample(self.observation_norm(observation), latent)

    def _sample(self, observation: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sampler_config(self) -> dict[str, int]:
        """Settings of the sampler that the weights only make sense with (saved in the ``state_dict``)."""
        raise NotImplementedError

    def get_extra_state(self) -> dict[str, int]:
        return self.sampler_config()

    def set_extra_state(self, state: dict[str, int]) -> None:
        # weights trained for one schedule silently give another map under a different one
        if state != self.sampler_config():
            raise ValueError(
                f"{type(self).__name__}: the state_dict was saved with sampler settings {state}, "
                f"this decoder has {self.sampler_config()}."
            )

    @dispatch(auto_batch_size=False)
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        observation_key, latent_key = self.in_keys
        missing = [key for key in self.in_keys if key not in tensordict.keys(include_nested=True)]
        if missing:
            raise KeyError(f"{type(self).__name__} needs the keys {missing} in its input tensordict.")
        action = self.decode(tensordict.get(observation_key), tensordict.get(latent_key))
        tensordict.set(self.out_keys[0], action)
        return tensordict
