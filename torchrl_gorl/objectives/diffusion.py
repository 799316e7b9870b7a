"""Denoising (epsilon-prediction) loss for :class:`~torchrl_gorl.modules.DiffusionDecoderModule`."""
from __future__ import annotations

import torch

from torchrl_gorl.modules.diffusion_decoder import DiffusionDecoderModule
from torchrl_gorl.objectives.decoder_loss import GenerativeDecoderLoss


class DiffusionLoss(GenerativeDecoderLoss):
    """DDPM epsilon-prediction loss that fits a GoRL diffusion decoder to ``p(a | s)``.

    For each action it draws ``num_noise_samples`` pairs ``(t, eps)`` with
    ``t ~ UniformInt{1, ..., T - 1}`` and ``eps ~ N(0, I)``, forms
    ``x_t = sqrt(abar_t) a + sqrt(1 - abar_t) eps`` and regresses ``eps_hat(s, x_t, t)`` on ``eps``.
    The reference also draws ``t = 0``, where ``abar_0 = 1`` makes ``x_0 = a`` carry no noise
    information and the DDIM sampler never evaluates the network; those draws are skipped here.

    Args:
        decoder_network (DiffusionDecoderModule): the decoder to train.

    Keyword Args:
        num_noise_samples, reduction, check_finite: as in :class:`FlowMatchingLoss`.

    Default keys (change with :meth:`set_keys`): ``observation="observation"``,
    ``action="action"``, ``weight=None``. Output: ``"loss_diffusion"`` and the metrics of
    :class:`FlowMatchingLoss` (``"target_mean_square"`` is ``mean eps^2``, about 1).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl_gorl import DiffusionDecoderModule, DiffusionLoss
        >>> decoder = DiffusionDecoderModule(observation_dim=4, action_dim=2)
        >>> loss_fn = DiffusionLoss(decoder, num_noise_samples=4)
        >>> data = TensorDict(observation=torch.randn(32, 4), action=torch.randn(32, 2), batch_size=[32])
        >>> loss_fn(data)["loss_diffusion"].backward()
    """

    loss_name = "loss_diffusion"

    def __init__(self, decoder_network: DiffusionDecoderModule, **kwargs) -> None:
        if not isinstance(decoder_network, DiffusionDecoderModule):
            raise TypeError(f"DiffusionLoss expects a DiffusionDecoderModule, got {type(decoder_network).__name__}.")
        super().__init__(decoder_network, **kwargs)

    def _per_sample_loss(self, observation: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        decoder = self.decoder_network
        action = action.unsqueeze(-2)
        draws = (*action.shape[:-2], self.num_noise_samples)
        noise = torch.randn(*draws, action.shape[-1], device=action.device, dtype=action.dtype)
        t = torch.randint(1, decoder.num_diffusion_steps, (*draws, 1), device=action.device)
        alpha_bar = decoder.alpha_bar[t].to(action.dtype)
        x_t = alpha_bar.sqrt() * action + (1 - alpha_bar).sqrt() * noise
        predicted = decoder.predict_noise(observation.unsqueeze(-2), x_t, t)
        loss = (predicted - noise).pow(2).mean(dim=(-2, -1))
        return loss, noise.pow(2).mean(dim=(-2, -1))
