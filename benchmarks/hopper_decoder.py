"""What the decoder learned on hopper-stand, from checkpoints of ``preset=cpu_fast_15m`` runs (not committed).

- :func:`plot_decoder`: for a few fixed states, actions the last stage's decoder makes from ``N(0, I)`` latents,
  beside the Gaussian PPO policy's actions, both after the env's ``tanh``, in 2 of the 4 action dimensions
  (``python benchmarks/hopper_15m.py decoder GORL_RUN PPO_RUN``, two finished run directories).
- :func:`stage_boundaries`: what each decoder refit hands the next stage's fresh encoder, scored in returns
  (``python benchmarks/hopper_15m.py boundaries RUN CHECKPOINTS``, a GoRL run and every checkpoint it wrote).
"""
from __future__ import annotations

import csv
import pathlib
from typing import Any

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule, TensorDictSequential
from torchrl.checkpoint import Checkpoint
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_gorl import (DiffusionDecoderModule, FlowDecoderModule, make_gorl_policy, make_latent_actor,
                          make_prior_policy, ObservationNormalizer)
from torchrl_gorl.envs import make_env
from torchrl_gorl.training import batch_seed, evaluate_policy, load_checkpoint

#: the states shown: steps of one deterministic episode of the GoRL policy (seed 0), from lying to standing
STATE_STEPS = (0, 30, 150, 900)
NUM_SAMPLES = 2000
DIMS = (0, 1)
#: an action component beyond this (after tanh) is at the bound: a pre-squash value beyond 2.65
BOUND = 0.99


def saved_actor(saved: dict, obs_dim: int, act_dim: int, latent_key: str):
    """The checkpoint's actor: GoRL's latent policy (``latent_key="latent"``) or the Gaussian policy (``"action"``)."""
    cfg = saved["config"]
    norm = ObservationNormalizer(obs_dim) if cfg["encoder"]["normalize_observations"] else None
    actor = make_latent_actor(obs_dim, act_dim, num_cells=tuple(cfg["encoder"]["num_cells"]), observation_norm=norm,
                              latent_key=latent_key)
    actor.load_state_dict(saved["actor"])
    return actor


def saved_decoder(saved: dict, obs_dim: int, act_dim: int, load: bool = True):
    """The checkpoint's decoder (``load=False``: a new one of its shape, as a refit from scratch starts)."""
    cfg = saved["config"]["decoder"]
    if cfg["type"] == "flow":
        decoder = FlowDecoderModule(obs_dim, act_dim, num_cells=tuple(cfg["num_cells"]), num_steps=cfg["num_steps"])
    else:
        decoder = DiffusionDecoderModule(obs_dim, act_dim, num_cells=tuple(cfg["num_cells"]),
                                         num_diffusion_steps=cfg["num_diffusion_steps"])
    if load:
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
    actor, decoder = saved_actor(gorl, obs_dim, act_dim, "latent"), saved_decoder(gorl, obs_dim, act_dim)
    gaussian = saved_actor(ppo, obs_dim, act_dim, "action")
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


#: episodes per score at a stage boundary, all scores on the same episodes (reset seed) and the same torch seed
BOUNDARY_EPISODES = 32
BOUNDARY_SEED = 12345
#: what :func:`stage_boundaries` scores at the end of stage k (E_k: the stage's best encoder, D_k: the refit decoder)
BOUNDARY_SCORES = {
    "best_deterministic": "E_k's latent mean through D_{k-1}: the stage's best policy, on other episodes",
    "best_stochastic": "E_k's sampled latents through D_{k-1}: the policy the decoder data came from",
    "best_unit_noise": "E_k's latent mean plus N(0, I) noise through D_{k-1}: that policy at latent std 1",
    "refit_prior_mean": "D_k at z = 0: what a fresh encoder (latent mean near 0) starts from",
    "refit_prior": "D_k on z ~ N(0, I): the refit's copy of the data policy",
    "fresh_encoder": "the fresh encoder's latent mean through D_k: where stage k+1 starts",
}


def _fresh_actor(saved: dict, obs_dim: int, act_dim: int):
    """The encoder every stage starts from (the reference rebuilds it from the same seed): the scripts build it
    right after seeding torch with ``env.seed`` (``utils_gorl.setup`` then ``make_encoder``)."""
    cfg = saved["config"]
    torch.manual_seed(cfg["env"]["seed"])
    norm = ObservationNormalizer(obs_dim) if cfg["encoder"]["normalize_observations"] else None
    return make_latent_actor(obs_dim, act_dim, num_cells=tuple(cfg["encoder"]["num_cells"]), observation_norm=norm)


def checkpoint_names(checkpoints: pathlib.Path) -> dict[pathlib.Path, str]:
    """Every checkpoint file in ``checkpoints``, oldest first, with the name the run gave it (``stage{k}_iter…``,
    ``stage{k}_end``)."""
    return {path: (Checkpoint.manifest(path).get("metadata") or {}).get("name", "")
            for path in sorted(checkpoints.glob("checkpoint-*.torchrl"))}


def boundary_score(env, policy, exploration: ExplorationType) -> float:
    """Mean return of the :data:`BOUNDARY_EPISODES` common episodes (env and torch seeded the same every time)."""
    torch.manual_seed(BOUNDARY_SEED)
    result = evaluate_policy(env, policy, num_episodes=BOUNDARY_EPISODES, seed=BOUNDARY_SEED,
                             exploration_type=exploration)
    return round(result["return_mean"], 1)


def _unit_noise_policy(actor, decoder) -> TensorDictSequential:
    """The encoder's latent mean plus ``N(0, I)`` noise, decoded: run under ``DETERMINISTIC`` (the mean)."""
    noise = TensorDictModule(lambda loc: loc + torch.randn_like(loc), in_keys=["latent_loc"], out_keys=["latent"])
    return TensorDictSequential(actor, noise, decoder)


@torch.no_grad()
def stage_boundaries(run_dir: pathlib.Path, checkpoints: pathlib.Path) -> list[dict[str, Any]]:
    """For each stage end k that has a next stage: the scores of :data:`BOUNDARY_SCORES` (mean undiscounted return
    of :data:`BOUNDARY_EPISODES` 1000-step episodes), the stage's best evaluation and the next stage's first one
    (the fresh encoder on D_k) from ``run_dir/eval.csv``, E_k's mean latent std over its deterministic episodes and
    the fresh encoder's mean ``|latent mean|`` over the same states. ``fresh_reproduced`` says whether the rebuilt
    fresh encoder gives the run's own first evaluation of stage k+1 exactly (its episodes, its env backend).

    ``checkpoints`` must hold the ``stage{k}_end`` checkpoint (E_k, D_k) and one from inside stage k (D_{k-1}):
    a run keeps only its last, so copy each one as it is written."""
    names = checkpoint_names(checkpoints)
    files = list(names)
    with open(run_dir / "eval.csv") as f:
        rows = [{key: float(value) for key, value in row.items()} for row in csv.DictReader(f)]
    boundaries = []
    for end in [path for path in files if names[path].endswith("_end")]:
        k = int(names[end].removeprefix("stage").removesuffix("_end"))
        inside = [path for path in files if path < end and names[path].startswith(f"stage{k}_iter")]
        next_rows = [row for row in rows if row["stage"] == k + 1]
        if not inside or not next_rows:  # the last stage, or the checkpoints of stage k were not kept
            continue
        after, before = load_checkpoint(end), load_checkpoint(inside[-1])
        obs_dim, act_dim, cfg = *after["dims"], after["config"]
        actor, fresh = saved_actor(after, obs_dim, act_dim, "latent"), _fresh_actor(after, obs_dim, act_dim)
        old, new = saved_decoder(before, obs_dim, act_dim), saved_decoder(after, obs_dim, act_dim)
        policies = {
            "best_deterministic": (make_gorl_policy(actor, old), ExplorationType.DETERMINISTIC),
            "best_stochastic": (make_gorl_policy(actor, old), ExplorationType.RANDOM),
            "best_unit_noise": (_unit_noise_policy(actor, old), ExplorationType.DETERMINISTIC),
            "refit_prior_mean": (make_prior_policy(new), ExplorationType.DETERMINISTIC),
            "refit_prior": (make_prior_policy(new), ExplorationType.RANDOM),
            "fresh_encoder": (make_gorl_policy(fresh, new), ExplorationType.DETERMINISTIC),
        }
        run_env = make_env(cfg["env"]["task"], cfg["eval"]["num_envs"], backend=cfg["collector"]["env_backend"])
        again = evaluate_policy(run_env, make_gorl_policy(fresh, new), num_episodes=cfg["eval"]["num_episodes"],
                                seed=batch_seed(cfg["env"]["seed"], k + 1, rows.index(next_rows[0]), kind=3))
        run_env.close()
        env = make_env(cfg["env"]["task"], BOUNDARY_EPISODES, seed=0)
        stage_rows = [row["return_mean"] for row in rows if row["stage"] == k]
        result = {"stage": k, "episodes": BOUNDARY_EPISODES, "best_eval": max(stage_rows),
                  "stage_evals": len(stage_rows), "eval_episodes": cfg["eval"]["num_episodes"],
                  "next_first_eval": next_rows[0]["return_mean"],
                  "fresh_reproduced": abs(again["return_mean"] - next_rows[0]["return_mean"]) < 1e-3,
                  "checkpoints": [inside[-1].name, end.name]}
        for name, (policy, exploration) in policies.items():
            result[name] = boundary_score(env, policy, exploration)
        env.set_seed(BOUNDARY_SEED)
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            rollout = env.rollout(1000, make_gorl_policy(actor, old), break_when_any_done=False)
        result["latent_std"] = round(rollout["latent_scale"].mean().item(), 3)
        fresh_latent = fresh(rollout.select("observation").reshape(-1))["latent_loc"]
        result["fresh_latent_mean_abs"] = round(fresh_latent.abs().mean().item(), 3)
        # the refit's targets: the data policy's pre-tanh actions, unbounded, although tanh flattens them past ~2.65
        env.set_seed(BOUNDARY_SEED)
        torch.manual_seed(BOUNDARY_SEED)
        with set_exploration_type(ExplorationType.RANDOM):
            data = env.rollout(1000, make_gorl_policy(actor, old), break_when_any_done=False)["action"].abs()
        result["data_action_abs_mean"] = round(data.mean().item(), 2)
        result["data_action_abs_p99"] = round(data.flatten().quantile(0.99).item(), 2)
        env.close()
        print(f"stage {k} end: " + ", ".join(f"{key} {value}" for key, value in result.items() if key != "checkpoints"))
        boundaries.append(result)
    return boundaries
