"""The composite GoRL policy: latent actor followed by the frozen decoder."""
from __future__ import annotations

from tensordict.nn import TensorDictSequential
from torchrl.modules import ProbabilisticActor

from torchrl_gorl.modules.decoder import GenerativeDecoder


class GoRLPolicy(TensorDictSequential):
    """``observation -> latent (+ log-prob) -> pre-squash action``: what a collector runs.

    A plain :class:`~tensordict.nn.TensorDictSequential` of the latent actor and the decoder,
    with both parts reachable by name. Only the latent actor goes to the PPO loss (see
    :func:`~torchrl_gorl.objectives.make_latent_ppo_loss`); the decoder is frozen during a
    stage. To switch decoders between stages, load the new weights in place,
    ``policy.decoder.load_state_dict(new_decoder.state_dict())``, and call the collector's
    ``update_policy_weights_()``.

    Args:
        latent_actor (ProbabilisticActor): from :func:`~torchrl_gorl.modules.make_latent_actor`.
        decoder (GenerativeDecoder): a :class:`FlowDecoderModule` or :class:`DiffusionDecoderModule`.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl_gorl import FlowDecoderModule, make_gorl_policy, make_latent_actor
        >>> policy = make_gorl_policy(make_latent_actor(17, 6), FlowDecoderModule.identity(17, 6))
        >>> td = policy(TensorDict(observation=torch.randn(4, 17), batch_size=[4]))
        >>> bool((td["action"] == td["latent"]).all())
        True
        >>> actor, decoder = policy.latent_actor, policy.decoder
    """

    def __init__(self, latent_actor: ProbabilisticActor, decoder: GenerativeDecoder) -> None:
        sample_keys = getattr(latent_actor, "dist_sample_keys", None)
        if not sample_keys:
            raise TypeError(
                f"latent_actor must be a probabilistic actor with dist_sample_keys, got {type(latent_actor).__name__}."
            )
        if not isinstance(decoder, GenerativeDecoder):
            raise TypeError(f"decoder must be a GenerativeDecoder, got {type(decoder).__name__}.")
        latent_key = decoder.in_keys[1]
        if latent_key not in sample_keys:
            raise ValueError(f"the decoder reads the latent from {latent_key!r}, but the latent actor writes {sample_keys}.")
        latent_spec = getattr(latent_actor, "spec", None)
        if latent_spec is not None and latent_key in latent_spec.keys(True, True):
            latent_dim = latent_spec[latent_key].shape[-1]
            if latent_dim != decoder.action_dim:
                raise ValueError(
                    f"latent size {latent_dim} does not match the decoder's action/latent size {decoder.action_dim}."
                )
        super().__init__(latent_actor, decoder)

    @property
    def latent_actor(self) -> ProbabilisticActor:
        return self.module[0]

    @property
    def decoder(self) -> GenerativeDecoder:
        return self.module[1]


def make_gorl_policy(latent_actor: ProbabilisticActor, decoder: GenerativeDecoder) -> GoRLPolicy:
    """Composes the latent actor and the decoder into the policy a collector runs; see :class:`GoRLPolicy`
    (its example builds one with this function)."""
    return GoRLPolicy(latent_actor, decoder)


def split_gorl_policy(policy: GoRLPolicy) -> tuple[ProbabilisticActor, GenerativeDecoder]:
    """Gives back ``(latent_actor, decoder)`` of a policy built by :func:`make_gorl_policy`.

    Examples:
        >>> from torchrl_gorl import FlowDecoderModule, make_gorl_policy, make_latent_actor, split_gorl_policy
        >>> actor, decoder = make_latent_actor(5, 2), FlowDecoderModule.identity(5, 2)
        >>> split_gorl_policy(make_gorl_policy(actor, decoder)) == (actor, decoder)
        True
    """
    if not isinstance(policy, GoRLPolicy):
        raise TypeError(f"expected a GoRLPolicy, got {type(policy).__name__}.")
    return policy.latent_actor, policy.decoder
