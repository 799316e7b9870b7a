"""GMPO (Zhang et al., arXiv 2412.01245): advantage-weighted regression on a generative policy's own loss."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from torchrl_gorl.modules.decoder import GenerativeDecoder
from torchrl_gorl.modules.diffusion_decoder import DiffusionDecoderModule
from torchrl_gorl.modules.flow_decoder import FlowDecoderModule
from torchrl_gorl.objectives.diffusion import DiffusionLoss
from torchrl_gorl.objectives.flow_matching import FlowMatchingLoss


def gmpo_weights(advantage: torch.Tensor, beta: float, max_weight: float) -> torch.Tensor:
    """``min(exp(beta * A), w_max)``, computed as ``exp(min(beta * A, log w_max))`` so it never overflows.

    Examples:
        >>> import torch
        >>> gmpo_weights(torch.tensor([-1.0, 0.0, 1e4]), beta=1.0, max_weight=20.0)
        tensor([ 0.3679,  1.0000, 20.0000])
    """
    return torch.exp(torch.clamp(beta * advantage, max=torch.log(torch.as_tensor(max_weight)).item()))


class GMPOLoss(LossModule):
    """GMPO's objective ``E[min(exp(beta * A(s, a)), w_max) * l_gen(s, a)]`` for a flow or diffusion decoder.

    The target policy ``pi*(a | s) ∝ mu(a | s) exp(beta A(s, a))`` is projected onto the generative
    model by its own per-sample loss (:class:`FlowMatchingLoss` or :class:`DiffusionLoss`, chosen by
    the decoder type), weighted per sample through the core losses' ``weight`` key. The weights are
    neither normalised nor differentiated (as GenerativeRL); they are clipped from above only.

    The advantage comes from the ``advantage`` key (e.g. GAE advantages of an on-policy batch, as in
    GoRL's weighted decoder refit) or, when ``critic`` is given, from IQL critics as
    ``min_j Q_target,j(s, a) - V(s)`` (:meth:`IQLCriticLoss.advantage`: the target Q networks), under ``torch.no_grad()``.

    Args:
        decoder_network (GenerativeDecoder): a :class:`FlowDecoderModule` or :class:`DiffusionDecoderModule`.

    Keyword Args:
        beta (float): inverse temperature, ``>= 0``; ``beta=0`` gives every sample weight 1, i.e.
            plain generative behaviour cloning (the baseline GMPO improves on). Defaults to 1.0.
        max_weight (float): ``w_max``. Defaults to 100.
        critic (IQLCriticLoss, optional): source of the advantage. Defaults to ``None`` (read the key).
        normalize_advantage (bool): standardise the advantage over the batch before weighting, which
            makes ``beta`` independent of the reward scale. Defaults to ``False`` (GenerativeRL).
        num_noise_samples (int): (noise, time) draws per sample of the generative loss. Defaults to 1
            (GenerativeRL).

    Default keys (change with :meth:`set_keys`): ``observation="observation"``, ``action="action"``,
    ``advantage="advantage"``, ``weight="gmpo_weight"`` (written for the inner loss). Output:
    ``loss_gmpo`` and the metrics ``weight_mean``, ``weight_max``, ``clamped_fraction``, ``advantage_mean``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl_gorl import FlowDecoderModule, GMPOLoss
        >>> loss_fn = GMPOLoss(FlowDecoderModule(4, 2, num_cells=(32,)), beta=2.0, max_weight=10.0)
        >>> data = TensorDict(observation=torch.randn(8, 4), action=torch.randn(8, 2), advantage=torch.randn(8, 1),
        ...                   batch_size=[8])
        >>> out = loss_fn(data)
        >>> out["loss_gmpo"].backward()
        >>> bool(out["weight_max"] <= 10.0)
        True
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable tensordict keys.

        Attributes:
            observation (NestedKey): Defaults to ``"observation"``.
            action (NestedKey): the pre-squash action to model. Defaults to ``"action"``.
            advantage (NestedKey): ``[*B]`` or ``[*B, 1]``, read when there is no critic. Defaults to ``"advantage"``.
            weight (NestedKey): where the weights are written for the generative loss. Defaults to ``"gmpo_weight"``.
        """

        observation: NestedKey = "observation"
        action: NestedKey = "action"
        advantage: NestedKey = "advantage"
        weight: NestedKey = "gmpo_weight"

    default_keys = _AcceptedKeys
    out_keys = ["loss_gmpo", "weight_mean", "weight_max", "clamped_fraction", "advantage_mean"]

    def __init__(
        self,
        decoder_network: GenerativeDecoder,
        *,
        beta: float = 1.0,
        max_weight: float = 100.0,
        critic: LossModule | None = None,
        normalize_advantage: bool = False,
        num_noise_samples: int = 1,
    ) -> None:
        if isinstance(decoder_network, FlowDecoderModule):
            generative_loss = FlowMatchingLoss(decoder_network, num_noise_samples=num_noise_samples)
        elif isinstance(decoder_network, DiffusionDecoderModule):
            generative_loss = DiffusionLoss(decoder_network, num_noise_samples=num_noise_samples)
        else:
            raise TypeError(f"GMPOLoss expects a FlowDecoderModule or DiffusionDecoderModule, got {type(decoder_network).__name__}.")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
            raise ValueError(f"beta must be a non-negative number, got {beta!r}.")
        if isinstance(max_weight, bool) or not isinstance(max_weight, (int, float)) or not max_weight > 0:
            raise ValueError(f"max_weight must be a positive number, got {max_weight!r}.")
        super().__init__()
        self.generative_loss = generative_loss
        self.beta = float(beta)
        self.max_weight = float(max_weight)
        self.critic = critic
        self.normalize_advantage = normalize_advantage
        self._sync_inner_keys()

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        self._sync_inner_keys()

    def _sync_inner_keys(self) -> None:
        if "generative_loss" in self._modules:
            keys = self.tensor_keys
            self.generative_loss.set_keys(observation=keys.observation, action=keys.action, weight=keys.weight)

    @property
    def decoder_network(self) -> GenerativeDecoder:
        return self.generative_loss.decoder_network

    def weights(self, tensordict: TensorDictBase) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weights [*B], advantage [*B])`` for a batch, without gradients."""
        with torch.no_grad():
            if self.critic is not None:
                advantage = self.critic.advantage(tensordict)
            else:
                advantage = tensordict.get(self.tensor_keys.advantage, None)
                if advantage is None:
                    raise KeyError(f"GMPOLoss needs the key {self.tensor_keys.advantage!r} (or a critic).")
            if advantage.shape == (*tensordict.shape, 1):
                advantage = advantage.squeeze(-1)
            if advantage.shape != tensordict.shape:
                raise ValueError(f"advantage must have shape {tuple(tensordict.shape)} (+ (1,)), got {tuple(advantage.shape)}.")
            if self.normalize_advantage and advantage.numel() > 1:
                advantage = (advantage - advantage.mean()) / advantage.std().clamp_min(1e-6)
            return gmpo_weights(advantage, self.beta, self.max_weight), advantage

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        weight, advantage = self.weights(tensordict)
        data = tensordict.copy()  # shallow: the caller's tensordict is not written to
        data.set(self.tensor_keys.weight, weight)
        out = self.generative_loss(data)
        return TensorDict(
            loss_gmpo=out.get(self.generative_loss.loss_name),
            weight_mean=weight.mean(),
            weight_max=weight.max(),
            clamped_fraction=(weight >= self.max_weight * (1 - 1e-6)).float().mean(),
            advantage_mean=advantage.mean(),
        )
