"""The latent regulariser that keeps pi_theta(z | s) near the decoder's N(0, I) source."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from torchrl.modules import ProbabilisticActor
from torchrl.objectives import LossModule

_MODES = ("l2", "kl")


class LatentPriorLoss(LossModule):
    """Pulls the latent Gaussian ``N(mu(s), sigma(s))`` towards the decoder's source ``N(0, I)``.

    Two forms:

    - ``mode="l2"`` (default, the reference code): ``coeff * (mean(mu^2) + mean(sigma^2))``,
      averaged over batch and latent dimensions. It pulls ``sigma`` towards 0, not 1; the
      entropy bonus is what holds ``sigma`` up.
    - ``mode="kl"`` (the paper's figure): ``coeff * mean_batch KL(N(mu, sigma) || N(0, I))``, the
      KL summed over latent dimensions: ``0.5 * sum(mu^2 + sigma^2 - 1) - sum(log sigma)``.

    It is a separate :class:`~torchrl.objectives.LossModule` next to TorchRL's unmodified
    :class:`~torchrl.objectives.ClipPPOLoss` rather than a ``ClipPPOLoss`` subclass: it then
    composes with any PPO variant (``KLPENPPOLoss``, ``ClipPPOLoss`` with a value-norm, ...) and
    does not depend on ``ClipPPOLoss`` internals that change between TorchRL releases. The price
    is one extra forward of the (small) latent actor per minibatch. Both losses share the
    actor's parameter storage, so one optimiser over ``actor.parameters()`` serves both.

    ``coeff`` is a buffer: a per-stage schedule can change it in place with ``loss.coeff.fill_(c)``.

    Args:
        latent_actor (ProbabilisticActor): the latent policy (see :func:`make_latent_actor`).

    Keyword Args:
        coeff (float): weight of the penalty. Defaults to ``1e-3``.
        mode (str): ``"l2"`` or ``"kl"``. Defaults to ``"l2"``.
        functional (bool): whether the actor is functionalised (its parameters held by the loss, as TorchRL's
            losses do by default). ``False`` calls the actor module as it is, so that ``torch.func.functional_call``
            on a module holding the actor reaches this loss too (``ClipPPOLoss(functional=False)`` likewise).
            Defaults to ``True``.

    The loss reads the actor's own ``in_keys`` (``"observation"`` by default) and has no
    configurable keys of its own. Output: ``"loss_latent_prior"``, and the metrics
    ``"latent_loc_square"`` (``mean mu^2``) and ``"latent_scale_mean"`` (``mean sigma``).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl_gorl import LatentPriorLoss, make_latent_actor
        >>> actor = make_latent_actor(observation_dim=17, latent_dim=6)
        >>> prior = LatentPriorLoss(actor, coeff=5e-4)
        >>> out = prior(TensorDict(observation=torch.randn(8, 17), batch_size=[8]))
        >>> out["loss_latent_prior"].backward()
    """

    @dataclass
    class _AcceptedKeys:
        """No configurable keys: the actor's ``in_keys`` are read."""

    default_keys = _AcceptedKeys
    actor_network: ProbabilisticActor
    actor_network_params: TensorDictParams
    target_actor_network_params: TensorDictParams

    def __init__(
        self,
        latent_actor: ProbabilisticActor,
        *,
        coeff: float = 1e-3,
        mode: Literal["l2", "kl"] = "l2",
        functional: bool = True,
    ) -> None:
        if not hasattr(latent_actor, "get_dist"):
            raise TypeError(f"latent_actor must be a probabilistic actor with get_dist, got {type(latent_actor).__name__}.")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}.")
        if not coeff >= 0:
            raise ValueError(f"coeff must be non-negative, got {coeff!r}.")
        super().__init__()
        self._functional = functional
        if functional:
            self.convert_to_functional(latent_actor, "actor_network")
        else:
            self.actor_network = latent_actor
            self.actor_network_params = None
        self.mode = mode
        self.register_buffer("coeff", torch.tensor(float(coeff)))

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    @property
    def functional(self) -> bool:
        return self._functional

    @property
    def in_keys(self):
        return list(self.actor_network.in_keys)

    @property
    def out_keys(self):
        return ["loss_latent_prior"]

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        params = self.actor_network_params.to_module(self.actor_network) if self.functional else contextlib.nullcontext()
        with params:
            dist = self.actor_network.get_dist(tensordict.copy())
        loc, scale = dist.mean, dist.stddev
        if self.mode == "l2":
            penalty = loc.pow(2).mean() + scale.pow(2).mean()
        else:
            kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1) - scale.log()
            penalty = kl.sum(-1).mean()
        return TensorDict(
            {
                "loss_latent_prior": self.coeff * penalty,
                "latent_loc_square": loc.detach().pow(2).mean(),
                "latent_scale_mean": scale.detach().mean(),
            },
            batch_size=[],
        )
