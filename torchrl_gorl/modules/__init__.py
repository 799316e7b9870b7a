"""TensorDict modules of GoRL: the latent actor, the critic, the decoders and the composite policy."""
from torchrl_gorl.modules.critic import make_value_network, ValueNetwork
from torchrl_gorl.modules.decoder import ConditionalDecoderNetwork, GenerativeDecoder
from torchrl_gorl.modules.diffusion_decoder import cosine_alpha_bar, DiffusionDecoderModule
from torchrl_gorl.modules.flow_decoder import FlowDecoderModule
from torchrl_gorl.modules.flow_log_prob import flow_log_prob, flow_sample_log_prob
from torchrl_gorl.modules.flow_policy import FlowPolicy
from torchrl_gorl.modules.latent_actor import GaussianParamHead, LatentPolicyNetwork, make_latent_actor
from torchrl_gorl.modules.normalization import ObservationNormalizer
from torchrl_gorl.modules.prior_policy import make_prior_policy, PriorLatent
from torchrl_gorl.modules.policy import GoRLPolicy, make_gorl_policy, split_gorl_policy

__all__ = [
    "ConditionalDecoderNetwork",
    "DiffusionDecoderModule",
    "FlowDecoderModule",
    "FlowPolicy",
    "GaussianParamHead",
    "GenerativeDecoder",
    "GoRLPolicy",
    "LatentPolicyNetwork",
    "ObservationNormalizer",
    "PriorLatent",
    "ValueNetwork",
    "cosine_alpha_bar",
    "flow_log_prob",
    "flow_sample_log_prob",
    "make_gorl_policy",
    "make_latent_actor",
    "make_prior_policy",
    "make_value_network",
    "split_gorl_policy",
]
