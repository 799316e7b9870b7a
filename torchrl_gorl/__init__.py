"""torchrl_gorl: GoRL (arXiv 2512.02581) as TorchRL modules and objectives.

A Gaussian latent policy ``pi_theta(z | s)`` is trained with PPO in latent space while a
generative decoder ``a = g_phi(s, z)`` (flow matching or diffusion), frozen within a stage, turns
the latent into the action and is refit between stages on the latest rollouts.
"""
from torchrl_gorl.envs import TanhActionTransform
from torchrl_gorl.modules import (
    ConditionalDecoderNetwork,
    cosine_alpha_bar,
    DiffusionDecoderModule,
    FlowDecoderModule,
    flow_log_prob,
    flow_sample_log_prob,
    FlowPolicy,
    GaussianParamHead,
    GenerativeDecoder,
    GoRLPolicy,
    LatentPolicyNetwork,
    make_gorl_policy,
    make_latent_actor,
    make_prior_policy,
    make_value_network,
    ObservationNormalizer,
    PriorLatent,
    split_gorl_policy,
    ValueNetwork,
)
from torchrl_gorl.objectives import (
    check_latent_keys,
    DiffusionLoss,
    DPPOLoss,
    FlowMatchingLoss,
    FPOLoss,
    GenerativeDecoderLoss,
    GMPGLoss,
    gmpo_weights,
    GMPOLoss,
    IQLCriticLoss,
    make_iql_critics,
    LatentPriorLoss,
    make_latent_ppo_loss,
)
from torchrl_gorl import configs  # the scripts' typed configs: importing it stores them in Hydra's ConfigStore
from torchrl_gorl import config_readers

__version__ = "0.1.0"

__all__ = [
    "ConditionalDecoderNetwork",
    "DiffusionDecoderModule",
    "DiffusionLoss",
    "DPPOLoss",
    "FPOLoss",
    "FlowPolicy",
    "FlowDecoderModule",
    "FlowMatchingLoss",
    "GaussianParamHead",
    "GenerativeDecoder",
    "GMPGLoss",
    "GMPOLoss",
    "GenerativeDecoderLoss",
    "IQLCriticLoss",
    "GoRLPolicy",
    "LatentPolicyNetwork",
    "LatentPriorLoss",
    "ObservationNormalizer",
    "PriorLatent",
    "TanhActionTransform",
    "ValueNetwork",
    "check_latent_keys",
    "config_readers",
    "configs",
    "cosine_alpha_bar",
    "flow_log_prob",
    "flow_sample_log_prob",
    "gmpo_weights",
    "make_iql_critics",
    "make_gorl_policy",
    "make_latent_actor",
    "make_latent_ppo_loss",
    "make_prior_policy",
    "make_value_network",
    "split_gorl_policy",
]
