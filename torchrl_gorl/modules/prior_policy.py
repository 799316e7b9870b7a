"""A decoder driven by prior noise: the policy of a generative model trained on its own (GMPO, GMPG)."""
from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import dispatch, TensorDictModuleBase, TensorDictSequential
from torchrl.envs.utils import exploration_type, ExplorationType

from torchrl_gorl.modules.decoder import GenerativeDecoder


class PriorLatent(TensorDictModuleBase):
    """Writes ``latent ~ N(0, I)`` of size ``latent_dim`` for each observation; ``0`` (the prior's mode) under a
    deterministic exploration type.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> PriorLatent(3)(TensorDict(observation=torch.randn(5, 4), batch_size=[5]))["latent"].shape
        torch.Size([5, 3])
    """

    def __init__(self, latent_dim: int, *, observation_key="observation", latent_key="latent") -> None:
        super().__init__()
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}.")
        self.latent_dim = latent_dim
        self.in_keys, self.out_keys = [observation_key], [latent_key]

    @dispatch(auto_batch_size=False)
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        observation = tensordict.get(self.in_keys[0])
        shape = (*observation.shape[:-1], self.latent_dim)
        if exploration_type() in (ExplorationType.DETERMINISTIC, ExplorationType.MODE, ExplorationType.MEAN):
            latent = observation.new_zeros(shape)
        else:
            latent = torch.randn(shape, device=observation.device, dtype=observation.dtype)
        tensordict.set(self.out_keys[0], latent)
        return tensordict


def make_prior_policy(decoder: GenerativeDecoder) -> TensorDictSequential:
    """``observation -> latent ~ N(0, I) -> action`` through ``decoder``: a generative policy with no encoder.

    What GMPO and GMPG train: the decoder's sampler started from the noise its generative loss was fit
    from. Deterministic evaluation starts from the zero latent.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl_gorl import FlowDecoderModule, make_prior_policy
        >>> policy = make_prior_policy(FlowDecoderModule(4, 2, num_cells=(16,)))
        >>> policy(TensorDict(observation=torch.randn(3, 4), batch_size=[3]))["action"].shape
        torch.Size([3, 2])
    """
    if not isinstance(decoder, GenerativeDecoder):
        raise TypeError(f"decoder must be a GenerativeDecoder, got {type(decoder).__name__}.")
    return TensorDictSequential(PriorLatent(decoder.action_dim, observation_key=decoder.in_keys[0],
                                            latent_key=decoder.in_keys[1]), decoder)
