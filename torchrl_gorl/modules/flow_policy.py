"""A flow policy sampled from noise: the policy of the direct methods (FPO, DPPO) that GoRL is compared with."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from tensordict import TensorDictBase, unravel_key
from tensordict.nn import dispatch, TensorDictModuleBase
from tensordict.utils import NestedKey
from torchrl.envs.utils import exploration_type, ExplorationType

from torchrl_gorl.modules._utils import check_last_dim, check_positive
from torchrl_gorl.modules.flow_decoder import FlowDecoderModule

_RECORDS = (None, "fpo", "dppo")


class FlowPolicy(TensorDictModuleBase):
    """A generative policy ``pi_theta(a | s)``: ``x_1 ~ N(0, I)`` carried to the action by the Euler
    sampler of a :class:`~torchrl_gorl.modules.FlowDecoderModule` (``t = 1`` noise, ``t = 0`` action).

    Unlike GoRL, where a latent policy feeds the decoder, the initial noise here is not a learned
    distribution: the flow *is* the policy and is trained directly, by FPO or DPPO. At collection
    time the module writes, next to the (pre-squash) ``action``, what its loss needs, so that
    nothing is resampled in the loss and every PPO epoch sees the same draws:

    * ``record="fpo"``: ``num_mc_samples`` Monte-Carlo pairs ``(t_i, eps_i)`` under
      ``(fpo_key, "t")`` ``[*B, N, 1]`` and ``(fpo_key, "noise")`` ``[*B, N, d]``, and their
      conditional-flow-matching losses under the sampling parameters, ``(fpo_key, "cfm_loss")``
      ``[*B, N]`` (see :meth:`cfm_loss`);
    * ``record="dppo"``: the denoising chain ``x_1, ..., x_0`` under ``(dppo_key, "chain")``
      ``[*B, K + 1, d]`` and the per-step, per-dimension Gaussian log-likelihoods of each Euler-
      Maruyama step, ``(dppo_key, "log_prob")`` ``[*B, K, d]`` (see :meth:`step_log_prob`).

    Sampling is ``x <- x + dt * v(s, x, t_k) + sigma_k * xi`` with ``dt = -1 / K``; ``sde_sigma = 0``
    is the plain ODE (FPO), ``sde_sigma > 0`` makes every step a Gaussian with an exact likelihood
    (DPPO's denoising MDP). Under a deterministic exploration type (:func:`torchrl.envs.utils.set_exploration_type`
    with ``DETERMINISTIC``/``MODE``/``MEAN``) the policy starts from ``x_1 = 0``, adds no step noise and
    records nothing: the deterministic evaluation of this project (GoRL's FPO baseline instead evaluates
    from random ``x_1``). Sampling runs without gradients; the losses re-evaluate the velocity.

    Args:
        flow (FlowDecoderModule): the velocity network, its Euler grid (``num_steps``) and its
            observation normaliser.

    Keyword Args:
        record (str, optional): ``"fpo"``, ``"dppo"`` or ``None`` (actions only). Defaults to ``None``.
        num_mc_samples (int): FPO's (t, eps) pairs per action. Defaults to 8.
        t_sampling (str): ``"grid"`` draws ``t`` from the Euler grid ``{1, 1 - 1/K, ..., 1/K}`` (the
            reference), ``"uniform"`` from ``U(0, 1)``. Defaults to ``"grid"``.
        cfm_weighting (str): ``"eps"``: ``mean_d ((1 - t) (v - u))^2``, the velocity error read as a noise
            prediction (the reference's ``u_but_supervise_as_eps``); ``"velocity"``: ``mean_d (v - u)^2``.
            Defaults to ``"eps"``.
        sde_sigma (float or sequence of float): step noise ``sigma_k`` (one value, or one per step).
            Defaults to 0 (ODE).
        log_prob_min_std (float): floor on the step std inside :meth:`step_log_prob` (DPPO's
            ``min_logprob_denoising_std``); 0 keeps ``sigma_k``. Defaults to 0.
        noise_clip (float, optional): clip the step noise ``xi`` to ``[-c, c]`` (DPPO's
            ``randn_clip_value = 3``). Defaults to ``None``.
        observation_key, action_key (NestedKey): Default to ``"observation"`` and ``"action"``.
        fpo_key, dppo_key (NestedKey): sub-tensordicts for the recorded quantities. Default to
            ``"fpo"`` and ``"dppo"``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl_gorl import FlowDecoderModule, FlowPolicy
        >>> flow = FlowDecoderModule(5, 2, num_cells=(32, 32), output_scale=0.25)
        >>> policy = FlowPolicy(flow, record="fpo", num_mc_samples=4)
        >>> td = policy(TensorDict(observation=torch.randn(3, 5), batch_size=[3]))
        >>> td["action"].shape, td["fpo", "noise"].shape, td["fpo", "cfm_loss"].shape
        (torch.Size([3, 2]), torch.Size([3, 4, 2]), torch.Size([3, 4]))
    """

    def __init__(
        self,
        flow: FlowDecoderModule,
        *,
        record: str | None = None,
        num_mc_samples: int = 8,
        t_sampling: str = "grid",
        cfm_weighting: str = "eps",
        sde_sigma: float | Sequence[float] = 0.0,
        log_prob_min_std: float = 0.0,
        noise_clip: float | None = None,
        observation_key: NestedKey = "observation",
        action_key: NestedKey = "action",
        fpo_key: NestedKey = "fpo",
        dppo_key: NestedKey = "dppo",
    ) -> None:
        super().__init__()
        if not isinstance(flow, FlowDecoderModule):
            raise TypeError(f"FlowPolicy expects a FlowDecoderModule, got {type(flow).__name__}.")
        if record not in _RECORDS:
            raise ValueError(f"record must be one of {list(_RECORDS)}, got {record!r}.")
        check_positive(num_mc_samples=num_mc_samples)
        if t_sampling not in ("grid", "uniform"):
            raise ValueError(f"t_sampling must be 'grid' or 'uniform', got {t_sampling!r}.")
        if cfm_weighting not in ("eps", "velocity"):
            raise ValueError(f"cfm_weighting must be 'eps' or 'velocity', got {cfm_weighting!r}.")
        sigma = [sde_sigma] * flow.num_steps if isinstance(sde_sigma, (int, float)) else list(sde_sigma)
        if len(sigma) != flow.num_steps or any(isinstance(s, bool) or not s >= 0 for s in sigma):
            raise ValueError(
                f"sde_sigma must be a non-negative number or {flow.num_steps} of them (one per Euler step), got {sde_sigma!r}."
            )
        if not log_prob_min_std >= 0:
            raise ValueError(f"log_prob_min_std must be non-negative, got {log_prob_min_std!r}.")
        if noise_clip is not None and not noise_clip > 0:
            raise ValueError(f"noise_clip must be positive or None, got {noise_clip!r}.")
        if record == "dppo" and min(sigma) == 0:
            # a noiseless step is deterministic: its likelihood ratio has no gradient, whatever the floor
            raise ValueError("record='dppo' needs stochastic steps: sde_sigma must be positive at every step.")
        self.flow = flow
        self.record = record
        self.num_mc_samples = num_mc_samples
        self.t_sampling = t_sampling
        self.cfm_weighting = cfm_weighting
        self.log_prob_min_std = float(log_prob_min_std)
        self.noise_clip = noise_clip
        self.register_buffer("sde_sigma", torch.tensor(sigma, dtype=torch.float32, device=flow.network.output_layer.weight.device))
        self._noisy_steps = max(sigma) > 0  # fixed at construction: no device sync per env step
        self.in_keys = [observation_key]
        out_keys = [action_key]
        if record == "fpo":
            out_keys += [unravel_key((fpo_key, name)) for name in ("t", "noise", "cfm_loss")]
        elif record == "dppo":
            out_keys += [unravel_key((dppo_key, name)) for name in ("chain", "log_prob")]
        self.out_keys = out_keys

    @property
    def action_dim(self) -> int:
        return self.flow.action_dim

    @property
    def num_steps(self) -> int:
        return self.flow.num_steps

    # ------------------------------------------------------------------ likelihood proxies
    def cfm_loss(self, observation: torch.Tensor, action: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Per-pair conditional-flow-matching loss ``[*B, N]`` of ``action`` ``[*B, d]`` at ``(t, noise)``.

        ``x_t = t * noise + (1 - t) * a``, target velocity ``u = noise - a``; averaged over action
        dimensions, weighted by ``(1 - t)^2`` with ``cfm_weighting="eps"``. FPO's ratio is
        ``exp(cfm_loss_old - cfm_loss_new)``.
        """
        action = action.unsqueeze(-2)
        x_t = t * noise + (1 - t) * action
        error = self.flow.velocity(observation.unsqueeze(-2), x_t, t) - (noise - action)
        if self.cfm_weighting == "eps":
            error = (1 - t) * error
        return error.pow(2).mean(-1)

    def step_log_prob(self, observation: torch.Tensor, chain: torch.Tensor) -> torch.Tensor:
        """Per-step, per-dimension log-likelihood ``[*B, K, d]`` of a chain ``[*B, K + 1, d]``.

        Step ``k`` is ``N(x_k + dt * v(s, x_k, t_k), max(sigma_k, log_prob_min_std)^2)``; every step is
        scored from the stored ``(x_k, x_{k+1})``, so no gradient runs through the chain.
        """
        K = self.num_steps
        x, x_next = chain[..., :-1, :], chain[..., 1:, :]
        t = self.flow.step_times(chain)  # [K, 1]: broadcasts over the batch
        mean = x + (-1.0 / K) * self.flow.velocity(observation.unsqueeze(-2), x, t)
        std = self.sde_sigma.to(chain.dtype).clamp_min(self.log_prob_min_std).unsqueeze(-1)  # [K, 1]
        return -0.5 * ((x_next - mean) / std).pow(2) - std.log() - 0.5 * math.log(2 * math.pi)

    # ------------------------------------------------------------------ sampling
    def _draw_noise(self, like: torch.Tensor) -> torch.Tensor:
        xi = torch.randn_like(like)
        return xi.clamp(-self.noise_clip, self.noise_clip) if self.noise_clip is not None else xi

    @torch.no_grad()
    def sample(self, observation: torch.Tensor, *, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Action ``[*B, d]`` for raw observations, and the chain ``[*B, K + 1, d]`` when step noise is on."""
        check_last_dim(observation, self.flow.observation_dim, "observation")
        shape = (*observation.shape[:-1], self.action_dim)
        x = observation.new_zeros(shape) if deterministic else torch.randn(shape, device=observation.device, dtype=observation.dtype)
        if deterministic or not self._noisy_steps:  # the plain ODE: nothing to record but the action
            return self.flow.decode(observation, x), None
        sigma = self.sde_sigma.to(x.dtype)
        return self.flow.sample_path(observation, x, step_noise=lambda k, x: sigma[k] * self._draw_noise(x))

    @dispatch(auto_batch_size=False)
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        observation = tensordict.get(self.in_keys[0], None)
        if observation is None:
            raise KeyError(f"FlowPolicy needs the key {self.in_keys[0]!r} in its input tensordict.")
        deterministic = exploration_type() in (ExplorationType.DETERMINISTIC, ExplorationType.MODE, ExplorationType.MEAN)
        action, chain = self.sample(observation, deterministic=deterministic)
        tensordict.set(self.out_keys[0], action)
        if deterministic or self.record is None:
            return tensordict
        with torch.no_grad():
            if self.record == "fpo":
                pairs = (*action.shape[:-1], self.num_mc_samples)
                if self.t_sampling == "grid":
                    grid = self.flow.step_times(action).squeeze(-1)
                    t = grid[torch.randint(self.num_steps, pairs, device=action.device)].unsqueeze(-1)
                else:
                    t = torch.rand(*pairs, 1, device=action.device, dtype=action.dtype)
                noise = torch.randn(*pairs, self.action_dim, device=action.device, dtype=action.dtype)
                for key, value in zip(self.out_keys[1:], (t, noise, self.cfm_loss(observation, action, t, noise))):
                    tensordict.set(key, value)
            else:
                tensordict.set(self.out_keys[1], chain)
                # scored from the stored chain with the loss's own function (a second pass of K velocity calls
                # rather than -xi^2 / 2 from the drawn noise): float rounding would otherwise keep the first
                # PPO ratio from being exactly 1
                tensordict.set(self.out_keys[2], self.step_log_prob(observation, chain))
        return tensordict

    def extra_repr(self) -> str:
        return f"record={self.record!r}, num_steps={self.num_steps}, num_mc_samples={self.num_mc_samples}"
