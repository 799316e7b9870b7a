"""FPO (Flow Policy Optimization, arXiv 2507.21053): PPO-clip on a ratio built from flow-matching losses."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl_gorl.modules.flow_policy import FlowPolicy
from torchrl_gorl.objectives.flow_policy_ppo import FlowPolicyPPOLoss

_RATIOS = ("per_sample", "mean")


class FPOLoss(FlowPolicyPPOLoss):
    """TorchRL's :class:`~torchrl.objectives.ClipPPOLoss` with FPO's likelihood-ratio proxy.

    A flow policy has no tractable ``log pi(a | s)``. FPO replaces the PPO ratio by
    ``exp(l_old - l_new)``, where ``l`` is the conditional-flow-matching loss of the taken action
    (:meth:`FlowPolicy.cfm_loss`) at Monte-Carlo pairs ``(t_i, eps_i)`` drawn and scored under the
    sampling parameters at collection time (``FlowPolicy(record="fpo")``). Only :meth:`_log_weight`
    differs from ``ClipPPOLoss``: advantage normalisation, clipping, the value loss and the
    reduction are TorchRL's. Two ratios:

    * ``ratio="per_sample"`` (GoRL's FPO baseline): one ratio per pair,
      ``exp(clip(l_old_i - l_new_i, -c, c))`` with ``c = log_ratio_clip`` (3), the advantage broadcast
      over the pairs;
    * ``ratio="mean"`` (the FPO paper and its code's default): one ratio per action,
      ``exp(mean_i l_old_i - mean_i l_new_i)``, unclipped exponent.

    On the batch it was collected with (same parameters and observation statistics) every ratio is
    exactly 1. There is no entropy term (FPO has none; exploration is the initial noise).

    Args:
        actor_network (FlowPolicy): the policy that wrote the pairs.
        critic_network (TensorDictModule): ``V(s)`` writing ``"state_value"``.

    Keyword Args:
        clip_epsilon (float): PPO clip. Defaults to 0.05 (the reference's FPO setting).
        ratio (str): ``"per_sample"`` or ``"mean"``. Defaults to ``"per_sample"``.
        log_ratio_clip (float): ``c`` of the per-sample ratio. Defaults to 3.
        critic_coeff, loss_critic_type, normalize_advantage, reduction, ...: as ``ClipPPOLoss``;
            defaults here follow the reference (0.25, ``"l2"``, ``True``; see :class:`FlowPolicyPPOLoss`).

    Default keys (change with :meth:`set_keys`): those of ``ClipPPOLoss`` (``advantage``,
    ``value_target``, ``state_value``, ``action``, ...) plus ``observation="observation"``,
    ``mc_time=("fpo", "t")``, ``mc_noise=("fpo", "noise")``, ``cfm_loss=("fpo", "cfm_loss")``.
    Outputs: ``loss_objective``, ``loss_critic``, ``clip_fraction``, ``kl_approx`` (minus the mean
    log-ratio, i.e. mean ``l_new - l_old``, clipped to ``+-c`` with per-sample ratios), ``mean_ratio``, ``max_ratio``, ``ESS``, ``cfm_loss`` (mean ``l_new``),
    ``explained_variance``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl_gorl import FlowDecoderModule, FlowPolicy, FPOLoss, make_value_network
        >>> policy = FlowPolicy(FlowDecoderModule(5, 2, num_cells=(32, 32)), record="fpo")
        >>> loss_fn = FPOLoss(policy, make_value_network(5, num_cells=(32,)))
        >>> data = policy(TensorDict(observation=torch.randn(16, 5), batch_size=[16]))
        >>> data["advantage"], data["value_target"] = torch.randn(16, 1), torch.randn(16, 1)
        >>> out = loss_fn(data)
        >>> float(out["mean_ratio"])
        1.0
        >>> (out["loss_objective"] + out["loss_critic"]).backward()
    """

    @dataclass
    class _AcceptedKeys(FlowPolicyPPOLoss._AcceptedKeys):
        """Keys of ``ClipPPOLoss`` plus the ones FPO reads.

        Attributes:
            observation (NestedKey): the raw observation. Defaults to ``"observation"``.
            mc_time (NestedKey): ``t`` of the stored pairs, ``[*B, N, 1]``. Defaults to ``("fpo", "t")``.
            mc_noise (NestedKey): ``eps`` of the stored pairs, ``[*B, N, d]``. Defaults to ``("fpo", "noise")``.
            cfm_loss (NestedKey): the pairs' losses under the sampling parameters, ``[*B, N]``.
                Defaults to ``("fpo", "cfm_loss")``.
        """

        observation: NestedKey = "observation"
        mc_time: NestedKey = ("fpo", "t")
        mc_noise: NestedKey = ("fpo", "noise")
        cfm_loss: NestedKey = ("fpo", "cfm_loss")

    default_keys = _AcceptedKeys
    actor_network: FlowPolicy

    _record_keys = ("action", "mc_time", "mc_noise", "cfm_loss")

    def __init__(
        self,
        actor_network: FlowPolicy,
        critic_network=None,
        *,
        clip_epsilon: float = 0.05,
        ratio: str = "per_sample",
        log_ratio_clip: float = 3.0,
        **kwargs,
    ) -> None:
        if ratio not in _RATIOS:
            raise ValueError(f"ratio must be one of {list(_RATIOS)}, got {ratio!r}.")
        if not log_ratio_clip > 0:
            raise ValueError(f"log_ratio_clip must be positive, got {log_ratio_clip!r}.")
        super().__init__(actor_network, critic_network, clip_epsilon=clip_epsilon, **kwargs)
        self.ratio = ratio
        self.log_ratio_clip = float(log_ratio_clip)
        self._cfm_loss_new: torch.Tensor | None = None

    def _log_weight(self, tensordict: TensorDictBase, adv_shape: torch.Size):
        action, t, noise, old = self._records(tensordict)
        with self._actor_params():
            new = self.actor_network.cfm_loss(tensordict.get(self.tensor_keys.observation), action, t, noise)
        self._cfm_loss_new = new.detach().mean()
        if self.ratio == "per_sample":
            log_weight = (old - new).clamp(-self.log_ratio_clip, self.log_ratio_clip).unsqueeze(-1)  # [*B, N, 1]
        else:
            log_weight = (old.mean(-1) - new.mean(-1)).unsqueeze(-1)  # [*B, 1]
        return log_weight, None, -log_weight.detach(), None

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        out = super().forward(tensordict)
        out.set("cfm_loss", self._cfm_loss_new)
        self._cfm_loss_new = None
        return out
