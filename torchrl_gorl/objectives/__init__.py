"""Objectives of GoRL: decoder losses, the latent regulariser and latent PPO."""
from torchrl_gorl.objectives.decoder_loss import GenerativeDecoderLoss
from torchrl_gorl.objectives.diffusion import DiffusionLoss
from torchrl_gorl.objectives.flow_matching import FlowMatchingLoss
from torchrl_gorl.objectives.latent_ppo import check_latent_keys, make_latent_ppo_loss
from torchrl_gorl.objectives.latent_prior import LatentPriorLoss

__all__ = [
    "DiffusionLoss",
    "FlowMatchingLoss",
    "GenerativeDecoderLoss",
    "LatentPriorLoss",
    "check_latent_keys",
    "make_latent_ppo_loss",
]
