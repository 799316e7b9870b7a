"""Objectives: GoRL's decoder losses, latent regulariser and latent PPO; the FPO and DPPO baselines; GMPO, GMPG and their IQL critics."""
from torchrl_gorl.objectives.decoder_loss import GenerativeDecoderLoss
from torchrl_gorl.objectives.diffusion import DiffusionLoss
from torchrl_gorl.objectives.dppo import DPPOLoss
from torchrl_gorl.objectives.flow_matching import FlowMatchingLoss
from torchrl_gorl.objectives.fpo import FPOLoss
from torchrl_gorl.objectives.gmpg import GMPGLoss
from torchrl_gorl.objectives.gmpo import gmpo_weights, GMPOLoss
from torchrl_gorl.objectives.iql_critic import IQLCriticLoss, make_iql_critics
from torchrl_gorl.objectives.latent_ppo import check_latent_keys, make_latent_ppo_loss
from torchrl_gorl.objectives.latent_prior import LatentPriorLoss

__all__ = [
    "DPPOLoss",
    "FPOLoss",
    "DiffusionLoss",
    "FlowMatchingLoss",
    "GMPGLoss",
    "GMPOLoss",
    "GenerativeDecoderLoss",
    "IQLCriticLoss",
    "LatentPriorLoss",
    "check_latent_keys",
    "gmpo_weights",
    "make_iql_critics",
    "make_latent_ppo_loss",
]
