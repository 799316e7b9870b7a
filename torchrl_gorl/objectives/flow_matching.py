"""Conditional flow matching for :class:`~torchrl_gorl.modules.FlowDecoderModule`."""
from __future__ import annotations

import torch

from torchrl_gorl.modules.flow_decoder import FlowDecoderModule
from torchrl_gorl.objectives.decoder_loss import GenerativeDecoderLoss


class FlowMatchingLoss(GenerativeDecoderLoss):
    """Conditional flow-matching (rectified flow) loss that fits a GoRL flow decoder to ``p(a | s)``.

    For each action ``a`` it draws ``num_noise_samples`` pairs of fresh source noise
    ``eps ~ N(0, I)`` and time ``t ~ U(0, 1)``, forms ``x_t = t * eps + (1 - t) * a`` and regresses
    the velocity ``v_phi(s, x_t, t)`` on ``eps - a``:
    ``loss = mean_{draws, dims} (v_phi(s, x_t, t) - (eps - a))^2`` per sample. The source noise
    is never the encoder's latent: the decoder learns a transport from ``N(0, I)``, which is
    what lets the next stage's latent policy start near the previous stochastic policy.
    All draws are computed in one batched call (no Python loop over samples).

    Args:
        decoder_network (FlowDecoderModule): the decoder to train.

    Keyword Args:
        num_noise_samples (int): (noise, time) draws per action. Defaults to 8.
        reduction (str): ``"mean"`` (default), ``"sum"`` or ``"none"``.
        check_finite (bool): raise a ``ValueError`` on NaN/inf inputs instead of returning a NaN
            loss. Costs one synchronisation per call. Defaults to ``True``.

    Default keys (change with :meth:`set_keys`): ``observation="observation"``,
    ``action="action"``, ``weight=None``. Output: ``"loss_flow_matching"``, plus the metrics
    ``"target_mean_square"`` (``mean (eps - a)^2``, the loss of a zero velocity) and, with
    weights, ``"weight_mean"``, ``"weight_max"``, ``"weight_ess"``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl_gorl import FlowDecoderModule, FlowMatchingLoss
        >>> decoder = FlowDecoderModule(observation_dim=4, action_dim=2)
        >>> loss_fn = FlowMatchingLoss(decoder)
        >>> data = TensorDict(observation=torch.randn(32, 4), action=torch.randn(32, 2), batch_size=[32])
        >>> loss = loss_fn(data)
        >>> loss["loss_flow_matching"].backward()
    """

    loss_name = "loss_flow_matching"

    def __init__(self, decoder_network: FlowDecoderModule, **kwargs) -> None:
        if not isinstance(decoder_network, FlowDecoderModule):
            raise TypeError(f"FlowMatchingLoss expects a FlowDecoderModule, got {type(decoder_network).__name__}.")
        super().__init__(decoder_network, **kwargs)

    def _per_sample_loss(self, observation: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        action = action.unsqueeze(-2)  # [*B, 1, d]: broadcast against the draws
        draws = (*action.shape[:-2], self.num_noise_samples)
        noise = torch.randn(*draws, action.shape[-1], device=action.device, dtype=action.dtype)
        t = torch.rand(*draws, 1, device=action.device, dtype=action.dtype)
        x_t = t * noise + (1 - t) * action
        target = noise - action
        velocity = self.decoder_network.velocity(observation.unsqueeze(-2), x_t, t)
        loss = (velocity - target).pow(2).mean(dim=(-2, -1))
        return loss, target.pow(2).mean(dim=(-2, -1))
