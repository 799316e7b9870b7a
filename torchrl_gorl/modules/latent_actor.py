"""The latent policy pi_theta(z | s): a state-dependent diagonal Gaussian, trained by PPO."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict.nn import TensorDictModule
from tensordict.utils import NestedKey
from torch import nn
from torch.nn import functional as F
from torchrl.data import Composite, Unbounded
from torchrl.envs.utils import ExplorationType
from torchrl.modules import IndependentNormal, ProbabilisticActor

from torchrl_gorl.modules._utils import check_last_dim, check_positive, lecun_uniform_, make_mlp


class GaussianParamHead(nn.Module):
    """Splits ``2 * d`` features into ``(loc, scale)`` with ``scale = clip(softplus(raw) + offset, min, max)``.

    This is the reference's std head (gorl-reference.md §2.2). TorchRL's
    :class:`~tensordict.nn.NormalParamExtractor` uses a different (biased-softplus) mapping, so
    it is not reused here.

    Examples:
        >>> head = GaussianParamHead()
        >>> loc, scale = head(torch.zeros(4, 6))
        >>> loc.shape, bool((scale > 0).all())
        (torch.Size([4, 3]), True)
    """

    def __init__(self, *, scale_offset: float = 1e-3, scale_min: float = 1e-3, scale_max: float = 10.0) -> None:
        super().__init__()
        if not 0 < scale_min < scale_max:
            raise ValueError(f"need 0 < scale_min < scale_max, got scale_min={scale_min!r}, scale_max={scale_max!r}.")
        self.scale_offset = scale_offset
        self.scale_min = scale_min
        self.scale_max = scale_max

    def forward(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = params.chunk(2, dim=-1)
        scale = (F.softplus(raw) + self.scale_offset).clamp(self.scale_min, self.scale_max)
        return loc, scale


class LatentPolicyNetwork(nn.Module):
    """``observation -> (loc, scale)`` of the latent Gaussian: [normaliser] -> MLP -> :class:`GaussianParamHead`."""

    def __init__(
        self,
        observation_dim: int,
        latent_dim: int,
        *,
        num_cells: Sequence[int] = (32, 32, 32, 32),
        activation_class: type[nn.Module] = nn.SiLU,
        observation_norm: nn.Module | None = None,
        scale_offset: float = 1e-3,
        scale_min: float = 1e-3,
        scale_max: float = 10.0,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        check_positive(observation_dim=observation_dim, latent_dim=latent_dim)
        self.observation_dim = observation_dim
        self.latent_dim = latent_dim
        self.observation_norm = observation_norm
        self.mlp = make_mlp(observation_dim, 2 * latent_dim, num_cells, activation_class, device)
        self.head = GaussianParamHead(scale_offset=scale_offset, scale_min=scale_min, scale_max=scale_max)

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_last_dim(observation, self.observation_dim, "observation")
        if self.observation_norm is not None:
            observation = self.observation_norm(observation)
        return self.head(self.mlp(observation))

    def reset_parameters(self) -> None:
        """LeCun-uniform weights, zero biases (called last by ``reset_parameters_recursive``)."""
        lecun_uniform_(self.mlp)


def _suffixed(key: NestedKey, suffix: str) -> NestedKey:
    """``"latent" -> "latent_loc"``, ``("agent", "latent") -> ("agent", "latent_loc")``."""
    if isinstance(key, str):
        return f"{key}_{suffix}"
    return (*key[:-1], f"{key[-1]}_{suffix}")


def make_latent_actor(
    observation_dim: int,
    latent_dim: int,
    *,
    num_cells: Sequence[int] = (32, 32, 32, 32),
    activation_class: type[nn.Module] = nn.SiLU,
    observation_norm: nn.Module | None = None,
    scale_offset: float = 1e-3,
    scale_min: float = 1e-3,
    scale_max: float = 10.0,
    observation_key: NestedKey = "observation",
    latent_key: NestedKey = "latent",
    device: torch.device | str | None = None,
) -> ProbabilisticActor:
    """Builds the GoRL latent policy ``pi_theta(z | s)`` as a TorchRL :class:`~torchrl.modules.ProbabilisticActor`.

    The actor reads ``observation_key`` and writes ``latent_key``, its log-probability under
    ``"<latent_key>_log_prob"`` (see ``actor.log_prob_keys``) and the distribution parameters
    ``"<latent_key>_loc"`` / ``"<latent_key>_scale"``. The distribution is an
    :class:`~torchrl.modules.IndependentNormal` with no squashing (the decoder starts its ODE
    from the raw latent), so the log-probability is summed over latent dimensions and the entropy
    is analytic. Under ``ExplorationType.DETERMINISTIC`` the latent is the mean; the default
    interaction type is ``RANDOM``, as collectors expect.

    Defaults follow the reference encoder: 4 hidden layers of 32 with SiLU, LeCun-uniform
    init including the output layer, zero biases and ``scale = clip(softplus(raw) + 1e-3, 1e-3, 10)``.

    Args:
        observation_dim (int): size of the flat observation.
        latent_dim (int): size of the latent; equal to the action size for GoRL decoders,
            which start their ODE / DDIM chain from the latent.

    Keyword Args:
        num_cells (sequence of int): hidden layer sizes. Defaults to ``(32, 32, 32, 32)``.
        activation_class (type): hidden activation. Defaults to :class:`torch.nn.SiLU`.
        observation_norm (nn.Module, optional): applied to the observation first, e.g. an
            :class:`~torchrl_gorl.modules.ObservationNormalizer` shared with the critic.
        scale_offset, scale_min, scale_max (float): the std head, see :class:`GaussianParamHead`.
        observation_key (NestedKey): input key. Defaults to ``"observation"``.
        latent_key (NestedKey): output key. Defaults to ``"latent"``.
        device: where to build the parameters.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> actor = make_latent_actor(observation_dim=17, latent_dim=6)
        >>> td = actor(TensorDict(observation=torch.randn(5, 17), batch_size=[5]))
        >>> td["latent"].shape, td["latent_log_prob"].shape
        (torch.Size([5, 6]), torch.Size([5]))
    """
    network = LatentPolicyNetwork(
        observation_dim,
        latent_dim,
        num_cells=num_cells,
        activation_class=activation_class,
        observation_norm=observation_norm,
        scale_offset=scale_offset,
        scale_min=scale_min,
        scale_max=scale_max,
        device=device,
    )
    loc_key, scale_key = _suffixed(latent_key, "loc"), _suffixed(latent_key, "scale")
    module = TensorDictModule(network, in_keys=[observation_key], out_keys=[loc_key, scale_key])
    return ProbabilisticActor(
        module,
        in_keys={"loc": loc_key, "scale": scale_key},
        out_keys=[latent_key],
        spec=Composite({latent_key: Unbounded(shape=(latent_dim,), device=device)}),
        distribution_class=IndependentNormal,
        return_log_prob=True,
        default_interaction_type=ExplorationType.RANDOM,
    )
