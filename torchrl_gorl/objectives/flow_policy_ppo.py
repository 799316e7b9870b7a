"""What FPO and DPPO share: ClipPPOLoss on a FlowPolicy with a log-ratio built from collection-time records."""
from __future__ import annotations

import contextlib

from tensordict import TensorDictBase
from torchrl.objectives import ClipPPOLoss

from torchrl_gorl.modules.flow_policy import FlowPolicy


class FlowPolicyPPOLoss(ClipPPOLoss):
    """Base of :class:`FPOLoss` and :class:`DPPOLoss`: TorchRL's ``ClipPPOLoss`` for a :class:`FlowPolicy`.

    A subclass names the keys it reads (``_record_keys``) and implements ``_log_weight``; advantage
    normalisation, clipping, the value loss and the reduction stay TorchRL's. There is no entropy term
    (a flow policy has no tractable entropy); the defaults of the value loss follow the reference
    (coefficient 0.25, squared error, normalised advantages).
    """

    #: names of ``tensor_keys`` entries the log-ratio reads, besides the observation
    _record_keys: tuple[str, ...] = ()

    def __init__(
        self,
        actor_network: FlowPolicy,
        critic_network=None,
        *,
        clip_epsilon: float,
        critic_coeff: float = 0.25,
        loss_critic_type: str = "l2",
        normalize_advantage: bool = True,
        **kwargs,
    ) -> None:
        name = type(self).__name__
        if not isinstance(actor_network, FlowPolicy):
            raise TypeError(f"{name} expects a FlowPolicy actor, got {type(actor_network).__name__}.")
        if not 0 < clip_epsilon < 1:
            raise ValueError(f"clip_epsilon must be in (0, 1), got {clip_epsilon!r}.")
        if kwargs.setdefault("entropy_bonus", False):
            raise ValueError(f"{name} has no entropy term: the flow policy has no tractable entropy.")
        super().__init__(
            actor_network,
            critic_network,
            clip_epsilon=clip_epsilon,
            critic_coeff=critic_coeff,
            loss_critic_type=loss_critic_type,
            normalize_advantage=normalize_advantage,
            **kwargs,
        )

    def _set_in_keys(self) -> None:
        keys = [self.tensor_keys.observation, *(getattr(self.tensor_keys, k) for k in self._record_keys),
                ("next", self.tensor_keys.reward), ("next", self.tensor_keys.done), ("next", self.tensor_keys.terminated)]
        if self.critic_network is not None:
            keys += list(self.critic_network.in_keys)
        self._in_keys = list(dict.fromkeys(keys))

    def _records(self, tensordict: TensorDictBase) -> list:
        """The recorded tensors, checked: present and without gradient."""
        keys = [getattr(self.tensor_keys, k) for k in self._record_keys]
        values = [tensordict.get(key, None) for key in keys]
        missing = [str(key) for key, value in zip(keys, values) if value is None]
        if missing:
            record = "fpo" if "cfm_loss" in self._record_keys else "dppo"
            raise KeyError(f"{type(self).__name__} needs {', '.join(missing)} in its input: "
                           f"collect with FlowPolicy(record=\"{record}\").")
        if any(value.requires_grad for value in values):
            raise RuntimeError(f"{type(self).__name__}: the recorded {self._record_keys} must not require grad.")
        return values

    def _actor_params(self):
        if self.functional:
            return self.actor_network_params.to_module(self.actor_network)
        return contextlib.nullcontext()

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        out = super().forward(tensordict)
        out.set("ESS", out.get("ESS").mean())  # one value per pair / denoising step
        return out
