"""What the decoder learned on hopper-stand: for a few fixed states, actions the last stage's decoder makes from
``N(0, I)`` latents, beside the Gaussian PPO policy's actions, both after the env's ``tanh``, in 2 of the 4 action
dimensions. Called by ``python benchmarks/hopper_15m.py decoder GORL_RUN PPO_RUN`` with two finished run
directories of ``preset=cpu_fast_15m`` (their ``checkpoints/`` hold the final models).
"""
from __future__ import annotations

import pathlib
from typing import Any

import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_gorl import (DiffusionDecoderModule, FlowDecoderModule, make_gorl_policy, make_latent_actor,
                          ObservationNormalizer)
from torchrl_gorl.envs import make_env
from torchrl_gorl.training import load_checkpoint

#: the states shown: steps of one deterministic episode of the GoRL policy (seed 0), from lying to standing
STATE_STEPS = (0, 30, 150, 900)
NUM_SAMPLES = 2000
DIMS = (0, 1)
#: an action component beyond this (after tanh) is at the bound: a pre-squash value beyond 2.65
BOUND = 0.99


def _actor(saved: dict, obs_dim: int, act_dim: int, latent_key: str):
    cfg = saved["config"]
    norm = ObservationNormalizer(obs_dim) if cfg["encoder"]["normalize_observations"] else None
    actor = make_latent_actor(obs_dim, act_dim, num_cells=tuple(cfg["encoder"]["num_cells"]), observation_norm=norm,
                              latent_key=latent_key)
    actor.load_state_dict(saved["actor"])
    return actor


def _decoder(saved: dict, obs_dim: int, act_dim: int):
    cfg = saved["config"]["decoder"]
    if cfg["type"] == "flow":
        decoder = FlowDecoderModule(obs_dim, act_dim, num_cells=tuple(cfg["num_cells"]), num_steps=cfg["num_steps"])
    else:
        decoder = DiffusionDecoderModule(obs_dim, act_dim, num_cells=tuple(cfg["num_cells"]),
                                         num_diffusion_steps=cfg["num_diffusion_steps"])
    decoder.load_state_dict(saved["decoder"])
    return decoder


@torch.no_grad()
def plot_decoder(gorl_run: pathlib.Path, ppo_run: pathlib.Path, path: pathlib.Path) -> dict[str, Any]:
    """Draws the figure at ``path``; returns, per state, the share of action components (all dims, after ``tanh``)
    beyond ``BOUND`` for the decoder on ``N(0, I)`` latents, for GoRL's policy (its encoder's stochastic latents
    through the decoder) and for the Gaussian policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gorl, ppo = load_checkpoint(gorl_run / "checkpoints"), load_checkpoint(ppo_run / "checkpoints")
    obs_dim, act_dim = gorl["dims"]
    actor, decoder = _actor(gorl, obs_dim, act_dim, "latent"), _decoder(gorl, obs_dim, act_dim)
    gaussian = _actor(ppo, obs_dim, act_dim, "action")
    # fixed states: one deterministic GoRL episode from a fixed seed
    env = make_env(gorl["config"]["env"]["task"], 1, seed=0)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = env.rollout(max(STATE_STEPS) + 1, make_gorl_policy(actor, decoder))
    env.close()
    states = rollout["observation"][0, list(STATE_STEPS)]
    torch.manual_seed(0)
    fig, axes = plt.subplots(1, len(STATE_STEPS), figsize=(3.2 * len(STATE_STEPS), 3.4), sharex=True, sharey=True)
    stats = {"gorl_run": "/".join(gorl_run.parts[-2:]), "ppo_run": "/".join(ppo_run.parts[-2:]),
             "state_steps": list(STATE_STEPS), "num_samples": NUM_SAMPLES, "bound": BOUND,
             "decoder_at_bound": [], "gorl_policy_at_bound": [], "gaussian_at_bound": []}
    for ax, step, state in zip(axes, STATE_STEPS, states):
        obs = state.expand(NUM_SAMPLES, -1)
        prior = torch.tanh(decoder.decode(obs, torch.randn(NUM_SAMPLES, act_dim)))
        policy = torch.tanh(gaussian(TensorDict({"observation": obs}, [NUM_SAMPLES]))["action"])
        latent = actor(TensorDict({"observation": obs}, [NUM_SAMPLES]))["latent"]  # GoRL's stochastic latents
        gorl_actions = torch.tanh(decoder.decode(obs, latent))
        for key, actions in (("decoder_at_bound", prior), ("gorl_policy_at_bound", gorl_actions),
                             ("gaussian_at_bound", policy)):
            stats[key].append(round((actions.abs() > BOUND).float().mean().item(), 4))
        ax.scatter(*policy[:, DIMS].T.numpy(), s=2, alpha=0.25, color="tab:orange", label="Gaussian PPO policy")
        ax.scatter(*prior[:, DIMS].T.numpy(), s=2, alpha=0.25, color="tab:blue", label="decoder, z ~ N(0, I)")
        ax.set_title(f"state at step {step}")
        ax.set_xlabel(f"action[{DIMS[0]}]")
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"action[{DIMS[1]}]")
    legend = axes[0].legend(fontsize=7, markerscale=4, loc="lower left")
    for handle in legend.legend_handles:
        handle.set_alpha(1)
    fig.suptitle("hopper-stand: the stage-3 decoder's actions from N(0, I) latents against the Gaussian policy's")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}: {len(STATE_STEPS)} states, {NUM_SAMPLES} samples each, action dims {DIMS}")
    return stats
