"""TorchRL's ClipPPOLoss pointed at the latent."""
from __future__ import annotations

from torchrl.modules import ProbabilisticActor
from torchrl.objectives import ClipPPOLoss, PPOLoss
from torchrl.modules import ValueOperator


def check_latent_keys(loss: PPOLoss, latent_actor: ProbabilisticActor) -> None:
    """Raises a ``ValueError`` unless ``loss`` scores the latent actor's own sample and log-prob.

    A PPO loss keyed on ``"action"`` still runs when the latent and action sizes agree, but it
    scores the decoder's output under the latent Gaussian: the ratio is wrong from the first
    batch (far from 1 on fresh data) and nothing fails loudly.
    """
    sample_keys = list(latent_actor.dist_sample_keys)
    log_prob_keys = list(latent_actor.log_prob_keys)
    if loss.tensor_keys.action not in sample_keys:
        raise ValueError(
            f"the PPO loss reads its sample from {loss.tensor_keys.action!r}, but the latent actor samples "
            f"{sample_keys}: PPO must score the latent, not the decoded action."
        )
    if loss.tensor_keys.sample_log_prob not in log_prob_keys:
        raise ValueError(
            f"the PPO loss reads the behaviour log-prob from {loss.tensor_keys.sample_log_prob!r}, "
            f"but the latent actor writes {log_prob_keys}."
        )


def make_latent_ppo_loss(
    latent_actor: ProbabilisticActor,
    critic: ValueOperator,
    **kwargs,
) -> ClipPPOLoss:
    """TorchRL's :class:`~torchrl.objectives.ClipPPOLoss` on the latent policy, keys set explicitly.

    PPO in latent space: the ratio is ``pi_theta(z | s) / pi_old(z | s)`` on the stored latent
    ``z``; the decoder is never called by the loss, so it gets no gradient. TorchRL 0.14 already
    infers the keys from the actor; they are set explicitly anyway (TorchRL's log-prob key
    naming has changed across releases) and then checked with :func:`check_latent_keys`.

    Args:
        latent_actor (ProbabilisticActor): the latent policy, **not** the composite policy.
        critic (ValueOperator): the value network.
        **kwargs: forwarded to :class:`~torchrl.objectives.ClipPPOLoss` (``clip_epsilon``,
            ``entropy_coeff``, ``critic_coeff``, ``loss_critic_type``, ``normalize_advantage``, ...).

    Examples:
        >>> from torchrl_gorl import make_latent_actor, make_latent_ppo_loss, make_value_network
        >>> actor = make_latent_actor(17, 6)
        >>> loss = make_latent_ppo_loss(actor, make_value_network(17), clip_epsilon=0.15)
        >>> loss.tensor_keys.action, loss.tensor_keys.sample_log_prob
        ('latent', 'latent_log_prob')
    """
    if not (getattr(latent_actor, "dist_sample_keys", None) and getattr(latent_actor, "log_prob_keys", None)):
        raise TypeError(
            f"latent_actor must be the ProbabilisticActor from make_latent_actor (with dist_sample_keys and "
            f"log_prob_keys), got {type(latent_actor).__name__}. Do not pass the composite GoRL policy."
        )
    loss = ClipPPOLoss(latent_actor, critic, **kwargs)
    loss.set_keys(action=latent_actor.dist_sample_keys[0], sample_log_prob=latent_actor.log_prob_keys[0])
    check_latent_keys(loss, latent_actor)
    return loss
