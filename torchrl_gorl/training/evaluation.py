"""The reference's evaluation protocol: deterministic policy, full episodes, undiscounted return."""
from __future__ import annotations

import math

import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_gorl.envs.tasks import EPISODE_LENGTH


@torch.no_grad()
def evaluate_policy(
    env: EnvBase,
    policy: TensorDictModuleBase,
    *,
    num_episodes: int,
    max_steps: int = EPISODE_LENGTH,
    seed: int | None = None,
    exploration_type: ExplorationType = ExplorationType.DETERMINISTIC,
) -> dict[str, float]:
    """Mean, std, min and max undiscounted return of ``num_episodes`` deterministic episodes.

    The policy runs under ``ExplorationType.DETERMINISTIC`` (for GoRL: the latent mean through
    the deterministic decoder). Each episode runs ``max_steps`` steps (dm_control episodes end by
    time limit at 1000) in rounds of ``env.batch_size`` parallel episodes; rewards are summed as
    the env returns them. ``frames`` counts every env step spent, for the eval step counter.

    Args:
        env (EnvBase): a batched env with one batch dimension (e.g. :func:`~torchrl_gorl.envs.make_env`).
        policy (TensorDictModuleBase): the policy to evaluate.

    Keyword Args:
        num_episodes (int): episodes to average, rounded up to a multiple of the env's batch size.
        max_steps (int): steps per episode. Defaults to 1000.
        seed (int, optional): reseeds the env first, so evaluations are reproducible.
        exploration_type (ExplorationType): how the policy acts. Defaults to ``DETERMINISTIC``, the protocol;
            ``RANDOM`` scores the stochastic policy that collects the training data (seed torch too to repeat it).
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be a positive integer, got {num_episodes!r}.")
    if seed is not None:
        env.set_seed(seed)
    batch = max(1, env.batch_size.numel())
    returns = []
    with set_exploration_type(exploration_type):
        for _ in range(math.ceil(num_episodes / batch)):
            rollout = env.rollout(max_steps, policy, break_when_any_done=False, auto_reset=True, auto_cast_to_device=True)
            returns.append(rollout["next", "reward"].sum(dim=env.batch_dims).reshape(-1))
    returns = torch.cat(returns).double()
    return {
        "return_mean": returns.mean().item(),
        "return_std": returns.std(unbiased=False).item(),
        "return_min": returns.min().item(),
        "return_max": returns.max().item(),
        "num_episodes": returns.numel(),
        "frames": returns.numel() * max_steps,
    }
