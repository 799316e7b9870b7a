"""DPPO (Diffusion Policy Policy Optimization, arXiv 2409.00588): PPO on the denoising MDP of a flow policy."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey
from torchrl_gorl.modules.flow_policy import FlowPolicy
from torchrl_gorl.objectives.flow_policy_ppo import FlowPolicyPPOLoss

_AGGREGATES = ("sum", "mean")


class DPPOLoss(FlowPolicyPPOLoss):
    """TorchRL's :class:`~torchrl.objectives.ClipPPOLoss` applied to every denoising step of a flow policy.

    With step noise ``sigma_k > 0`` each Euler-Maruyama step of :class:`FlowPolicy` is a Gaussian
    ``pi_theta(x_{k+1} | x_k, s)`` with an exact likelihood: the denoising MDP of DPPO. The policy
    records the chain and the per-step log-likelihoods at collection time (``record="dppo"``); this
    loss re-scores each stored step under the current parameters and applies the PPO clip per step,
    all steps sharing the environment step's advantage. Nothing backpropagates through the chain.

    Defaults reproduce GoRL's ``denoising_mdp`` baseline: per-step ratios over all ``K`` steps,
    log-likelihoods summed over action dimensions, no clamp, no denoising discount, one clip range.
    The original DPPO's choices are options:

    * ``num_finetune_steps = K'``: only the last ``K'`` steps enter the objective (DPPO fine-tunes the
      last ``K'`` of ``K``; here the network is shared, so the earlier steps still move with it);
    * ``log_prob_clamp = (-5, 2)`` and ``aggregate="mean"``: per-dimension log-likelihoods clamped,
      then averaged over dimensions (DPPO's ratio is a geometric mean over dimensions). DPPO pairs the
      clamp with a 0.1 std floor (``FlowPolicy(log_prob_min_std=0.1)``): with ``sigma = 0.05`` alone the
      per-dimension maximum is 2.08, so the upper clamp would cut the gradient of about 30% of dimensions;
    * ``denoising_discount = 0.99``: step ``k`` of ``K'`` gets ``gamma^(K' - 1 - k)`` times the advantage;
    * ``clip_epsilon_base``: a clip range growing along the chain,
      ``eps_k = eps_base + (eps - eps_base) (e^(3k/(K'-1)) - 1) / (e^3 - 1)``;
    * the noise floor (``log_prob_min_std``) and noise clip are sampling settings of :class:`FlowPolicy`.

    Args:
        actor_network (FlowPolicy): the policy that recorded the chains.
        critic_network (TensorDictModule): ``V(s)`` on the environment state.

    Keyword Args:
        clip_epsilon (float): PPO clip (of the last step with ``clip_epsilon_base``). Defaults to 0.2.
        num_finetune_steps (int, optional): ``K'``; ``None`` for all steps. Defaults to ``None``.
        aggregate (str): ``"sum"`` or ``"mean"`` over action dimensions. Defaults to ``"sum"``.
        log_prob_clamp (tuple of float, optional): per-dimension clamp. Defaults to ``None``.
        denoising_discount (float): Defaults to 1.0.
        clip_epsilon_base (float, optional): clip of the noisiest fine-tuned step. Defaults to ``None``.
        critic_coeff, loss_critic_type, normalize_advantage, ...: as ``ClipPPOLoss`` (0.25, ``"l2"``, ``True``;
            see :class:`FlowPolicyPPOLoss`).

    Default keys (change with :meth:`set_keys`): those of ``ClipPPOLoss`` plus
    ``observation="observation"``, ``chain=("dppo", "chain")``, ``chain_log_prob=("dppo", "log_prob")``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl_gorl import DPPOLoss, FlowDecoderModule, FlowPolicy, make_value_network
        >>> policy = FlowPolicy(FlowDecoderModule(5, 2, num_cells=(32, 32)), record="dppo", sde_sigma=0.05)
        >>> loss_fn = DPPOLoss(policy, make_value_network(5, num_cells=(32,)))
        >>> data = policy(TensorDict(observation=torch.randn(16, 5), batch_size=[16]))
        >>> data["advantage"], data["value_target"] = torch.randn(16, 1), torch.randn(16, 1)
        >>> out = loss_fn(data)
        >>> float(out["mean_ratio"])
        1.0
    """

    @dataclass
    class _AcceptedKeys(FlowPolicyPPOLoss._AcceptedKeys):
        """Keys of ``ClipPPOLoss`` plus the ones DPPO reads.

        Attributes:
            observation (NestedKey): the raw observation. Defaults to ``"observation"``.
            chain (NestedKey): ``x_1, ..., x_0``, ``[*B, K + 1, d]``. Defaults to ``("dppo", "chain")``.
            chain_log_prob (NestedKey): per-step, per-dimension log-likelihoods under the sampling
                parameters, ``[*B, K, d]``. Defaults to ``("dppo", "log_prob")``.
        """

        observation: NestedKey = "observation"
        chain: NestedKey = ("dppo", "chain")
        chain_log_prob: NestedKey = ("dppo", "log_prob")

    default_keys = _AcceptedKeys
    actor_network: FlowPolicy
    _record_keys = ("chain", "chain_log_prob")

    def __init__(
        self,
        actor_network: FlowPolicy,
        critic_network=None,
        *,
        clip_epsilon: float = 0.2,
        num_finetune_steps: int | None = None,
        aggregate: str = "sum",
        log_prob_clamp: tuple[float, float] | None = None,
        denoising_discount: float = 1.0,
        clip_epsilon_base: float | None = None,
        **kwargs,
    ) -> None:
        K = actor_network.num_steps if isinstance(actor_network, FlowPolicy) else None
        if num_finetune_steps is None:
            num_finetune_steps = K
        if K is not None and (isinstance(num_finetune_steps, bool) or not isinstance(num_finetune_steps, int)
                              or not 1 <= num_finetune_steps <= K):
            raise ValueError(f"num_finetune_steps must be an integer in [1, {K}] (the policy's steps), got {num_finetune_steps!r}.")
        if aggregate not in _AGGREGATES:
            raise ValueError(f"aggregate must be one of {list(_AGGREGATES)}, got {aggregate!r}.")
        if log_prob_clamp is not None and not (len(log_prob_clamp) == 2 and log_prob_clamp[0] < log_prob_clamp[1]):
            raise ValueError(f"log_prob_clamp must be (low, high) with low < high, got {log_prob_clamp!r}.")
        if not 0 < denoising_discount <= 1:
            raise ValueError(f"denoising_discount must be in (0, 1], got {denoising_discount!r}.")
        if clip_epsilon_base is not None and not 0 < clip_epsilon_base <= clip_epsilon:
            raise ValueError(f"clip_epsilon_base must be in (0, clip_epsilon = {clip_epsilon}], got {clip_epsilon_base!r}: "
                             "the clip range grows along the chain.")
        super().__init__(actor_network, critic_network, clip_epsilon=clip_epsilon, **kwargs)
        self.num_finetune_steps = num_finetune_steps
        self.aggregate = aggregate
        self.log_prob_clamp = tuple(log_prob_clamp) if log_prob_clamp is not None else None
        k = torch.arange(num_finetune_steps, dtype=torch.float32, device=self.clip_epsilon.device)
        # advantage weight of fine-tuned step k (0 = noisiest): gamma^(K' - 1 - k)
        self.register_buffer("step_weight", denoising_discount ** (num_finetune_steps - 1 - k))
        # growth profile of the clip range along the chain, 0 at the noisiest step and 1 at the last
        growth = (torch.expm1(3 * k / max(num_finetune_steps - 1, 1)) / math.expm1(3)) if num_finetune_steps > 1 else k + 1
        self.register_buffer("clip_growth", growth)
        self.register_buffer(
            "clip_epsilon_base", torch.tensor(clip_epsilon if clip_epsilon_base is None else clip_epsilon_base,
                                              device=self.clip_epsilon.device)
        )
        self._growing_clip = clip_epsilon_base is not None

    @property
    def _clip_bounds(self):
        if not self._growing_clip:
            return super()._clip_bounds
        eps = (self.clip_epsilon_base + (self.clip_epsilon - self.clip_epsilon_base) * self.clip_growth).unsqueeze(-1)
        return (-eps).log1p(), eps.log1p()  # [K', 1]: one range per fine-tuned step

    def _aggregate(self, log_prob: torch.Tensor) -> torch.Tensor:
        log_prob = log_prob[..., -self.num_finetune_steps :, :]
        if self.log_prob_clamp is not None:
            log_prob = log_prob.clamp(*self.log_prob_clamp)
        return log_prob.sum(-1) if self.aggregate == "sum" else log_prob.mean(-1)  # [*B, K']

    def _maybe_normalize_advantage(self, advantage, tensordict, *, update_norm):
        advantage = super()._maybe_normalize_advantage(advantage, tensordict, update_norm=update_norm)
        # the environment step's advantage, shared by its denoising steps (discounted along the chain)
        return advantage.unsqueeze(-2) * self.step_weight.to(advantage.dtype).unsqueeze(-1)  # [*B, K', 1]

    def _log_weight(self, tensordict: TensorDictBase, adv_shape: torch.Size):
        chain, old = self._records(tensordict)
        with self._actor_params():
            new = self.actor_network.step_log_prob(tensordict.get(self.tensor_keys.observation), chain)
        log_weight = (self._aggregate(new) - self._aggregate(old)).unsqueeze(-1)  # [*B, K', 1]
        return log_weight, None, -log_weight.detach(), None
