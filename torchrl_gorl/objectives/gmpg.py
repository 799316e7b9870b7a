"""GMPG (Zhang et al., arXiv 2412.01245): a KL-anchored policy gradient through a flow policy's sampler."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule

from torchrl_gorl.modules.flow_decoder import FlowDecoderModule
from torchrl_gorl.modules.flow_log_prob import DIVERGENCES, flow_log_prob, flow_sample_log_prob


class GMPGLoss(LossModule):
    """``E_s[-beta Q(s, a) + (log pi_theta(a | s) - log mu(a | s)) / (d ln 2)]`` with ``a = Phi_theta(z; s)``, ``z ~ N(0, I)``.

    A pathwise (reparameterised) estimate of ``-beta Q + KL(pi_theta || mu)``, the KL in bits per action
    dimension: the action is sampled through the policy flow's Euler sampler with gradients and both
    log-densities are change-of-variables log-densities (:func:`flow_log_prob`, :func:`flow_sample_log_prob`).
    The divergence is exact (``d`` backward passes per step, for small action sizes) or Hutchinson's estimate.

    ``policy_log_prob="reverse"`` (default) scores ``a`` under ``pi_theta`` as under ``mu``, by integrating it back
    to the noise: the same estimator for both, so with the exact divergence the anchor is exactly 0 when
    ``pi_theta = mu``.
    ``"path"`` takes the exact density of the Euler sampler along the sampled path instead (one pass
    less); it differs from the backward-integrated density by an ``O(1 / num_steps)`` discretisation term.

    Only the policy flow is trained: the loss keeps a frozen copy of the behaviour flow, taken when it
    is built, and the Q function is evaluated with the critic's target parameters, so
    its gradient reaches the action but no critic parameter. GenerativeRL integrates with 1000 Euler
    steps through an adjoint solver; here the flows' own ``num_steps`` grid is differentiated directly
    (memory grows with ``num_steps``).

    Args:
        policy_flow (FlowDecoderModule): ``pi_theta``, usually initialised from the behaviour flow.
        behaviour_flow (FlowDecoderModule): ``mu``, fit to the data by flow matching.
        critic (IQLCriticLoss): provides ``min_j Q_target,j(s, a)`` (:meth:`IQLCriticLoss.min_qvalue`).

    Keyword Args:
        beta (float): weight of the Q term. Defaults to 4.0 (GenerativeRL's cheetah setting).
        divergence (str): ``"exact"`` or ``"hutchinson"``. Defaults to ``"exact"``.
        policy_log_prob (str): ``"reverse"`` or ``"path"``. Defaults to ``"reverse"``.

    Default keys (change with :meth:`set_keys`): ``observation="observation"``. Output: ``loss_gmpg`` and
    the metrics ``q_mean``, ``log_prob_policy``, ``log_prob_behaviour``, ``kl_bits``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl_gorl import FlowDecoderModule, GMPGLoss, IQLCriticLoss, make_iql_critics
        >>> mu = FlowDecoderModule(4, 2, num_cells=(16,), num_steps=4)
        >>> pi = FlowDecoderModule(4, 2, num_cells=(16,), num_steps=4)
        >>> pi.load_state_dict(mu.state_dict())
        <All keys matched successfully>
        >>> loss_fn = GMPGLoss(pi, mu, IQLCriticLoss(*make_iql_critics(4, 2, num_cells=(16,))))
        >>> out = loss_fn(TensorDict(observation=torch.randn(8, 4), batch_size=[8]))
        >>> out["loss_gmpg"].backward()
        >>> float(out["kl_bits"]) == 0.0  # pi == mu: the anchor term vanishes
        True
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable tensordict keys.

        Attributes:
            observation (NestedKey): the conditioning observation. Defaults to ``"observation"``.
        """

        observation: NestedKey = "observation"

    default_keys = _AcceptedKeys

    def __init__(
        self,
        policy_flow: FlowDecoderModule,
        behaviour_flow: FlowDecoderModule,
        critic: LossModule,
        *,
        beta: float = 4.0,
        divergence: str = "exact",
        policy_log_prob: str = "reverse",
    ) -> None:
        for name, flow in (("policy_flow", policy_flow), ("behaviour_flow", behaviour_flow)):
            if not isinstance(flow, FlowDecoderModule):
                raise TypeError(f"{name} must be a FlowDecoderModule, got {type(flow).__name__}.")
        if policy_flow is behaviour_flow:
            raise ValueError("policy_flow and behaviour_flow must be different modules (copy the behaviour flow).")
        if policy_flow.action_dim != behaviour_flow.action_dim:
            raise ValueError(f"action sizes differ: policy {policy_flow.action_dim}, behaviour {behaviour_flow.action_dim}.")
        if not hasattr(critic, "min_qvalue"):
            raise TypeError(f"critic must provide min_qvalue(tensordict) (IQLCriticLoss), got {type(critic).__name__}.")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
            raise ValueError(f"beta must be a non-negative number, got {beta!r}.")
        if divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {list(DIVERGENCES)}, got {divergence!r}.")
        if policy_log_prob not in ("reverse", "path"):
            raise ValueError(f"policy_log_prob must be 'reverse' or 'path', got {policy_log_prob!r}.")
        super().__init__()
        self.policy_log_prob = policy_log_prob
        self.policy_flow = policy_flow
        # a frozen copy: the anchor stays where it was, and the caller's module is left untouched
        self.behaviour_flow = copy.deepcopy(behaviour_flow).requires_grad_(False)
        self.critic = critic
        self.beta = float(beta)
        self.divergence = divergence

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        observation = tensordict.get(self.tensor_keys.observation)
        d = self.policy_flow.action_dim
        latent = torch.randn(*observation.shape[:-1], d, device=observation.device, dtype=observation.dtype)
        if self.policy_log_prob == "path":
            action, log_prob_policy = flow_sample_log_prob(self.policy_flow, observation, latent, divergence=self.divergence)
        else:
            action = self.policy_flow.decode(observation, latent)  # differentiable Euler sampler
            log_prob_policy = flow_log_prob(self.policy_flow, observation, action, divergence=self.divergence)
        log_prob_behaviour = flow_log_prob(self.behaviour_flow, observation, action, divergence=self.divergence)
        q = self.critic.min_qvalue(TensorDict(observation=observation, action=action, batch_size=observation.shape[:-1]))
        kl_bits = (log_prob_policy - log_prob_behaviour) / (d * math.log(2))
        loss = (-self.beta * q + kl_bits).mean()
        return TensorDict(loss_gmpg=loss, q_mean=q.detach().mean(), log_prob_policy=log_prob_policy.detach().mean(),
                          log_prob_behaviour=log_prob_behaviour.detach().mean(), kl_bits=kl_bits.detach().mean())
