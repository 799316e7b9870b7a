"""Does a longer decoder refit copy the policy it is fit to better? One stage end of a GoRL hopper-stand run, offline.

At the end of stage k the stage's best encoder E_k, through the decoder D_{k-1}, collects the decoder data with
stochastic latents, and D_k is refit on it. :func:`hopper_decoder.stage_boundaries` scores that data policy and
the refit decoder's copy of it (D_k on ``z ~ N(0, I)``). This script collects the same amount of data from the
same policy again (other env seeds), refits a fresh decoder on it once per epoch budget, with the run's other
refit settings, and scores each copy on the same episodes as the boundary scores::

    python benchmarks/hopper_refit.py outputs/hopper_15m/hopper-stand/gorl_flow/seed3 CHECKPOINTS --stage 1 \\
        --epochs 30 150

With ``--clip C`` each budget is also refit on the same rows with their pre-tanh actions clamped to ``[-C, C]``:
the env's ``tanh`` barely tells them apart past 3 (``tanh(3) = 0.995``), but flow matching weighs them fully.

writes ``results/hopper_15m/refit_budget/<method>_<seed>_stage<k>.json``; ``hopper_15m.py report`` shows it.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from docblocks import ROOT  # noqa: E402
from hopper_decoder import (BOUNDARY_EPISODES, boundary_score, checkpoint_names, saved_actor,  # noqa: E402
                            saved_decoder)

from torchrl_gorl import FlowMatchingLoss, DiffusionLoss, make_gorl_policy, make_prior_policy  # noqa: E402
from torchrl_gorl.envs import make_env  # noqa: E402
from torchrl_gorl.envs.tasks import EPISODE_LENGTH  # noqa: E402
from torchrl_gorl.training import batch_seed, decoder_rows, load_checkpoint, refit_decoder  # noqa: E402

OUT = ROOT / "results" / "hopper_15m" / "refit_budget"
#: the collection's env seed: not one of the run's (its batch seeds are hashed from the run seed)
DATA_SEED = 777


def _score(task: str, policy, exploration: ExplorationType) -> float:
    env = make_env(task, BOUNDARY_EPISODES, seed=0)
    score = boundary_score(env, policy, exploration)
    env.close()
    return score


@torch.no_grad()
def collect(actor, decoder, cfg: dict[str, Any]) -> TensorDictBase:
    """The decoder data of a stage end as the run collects it: ``decoder_data_iterations`` batches of
    ``num_envs x unroll_length`` steps of stochastic latents through ``decoder``, pre-squash actions."""
    num_envs, unroll = cfg["collector"]["num_envs"], cfg["collector"]["unroll_length"] or EPISODE_LENGTH
    env = make_env(cfg["env"]["task"], num_envs, seed=DATA_SEED)
    policy, chunks = make_gorl_policy(actor, decoder), []
    with set_exploration_type(ExplorationType.RANDOM):
        tensordict = env.reset()
        for _ in range(cfg["schedule"]["decoder_data_iterations"]):
            rollout = env.rollout(unroll, policy, tensordict=tensordict, auto_reset=False, break_when_any_done=False)
            chunks.append(decoder_rows(rollout))
            tensordict = env.step_mdp(rollout[..., -1])  # episodes run on across batches, as the run's collector
    env.close()
    return torch.cat(chunks)


def refit_budgets(run_dir: pathlib.Path, checkpoints: pathlib.Path, stage: int, budgets: list[int],
                  clip: float | None = None) -> dict[str, Any]:
    if clip is not None and not clip > 0:
        raise SystemExit(f"--clip must be positive, got {clip}")
    names = checkpoint_names(checkpoints)
    files = list(names)
    ends = [path for path in files if names[path] == f"stage{stage}_end"]
    inside = [path for path in files if names[path].startswith(f"stage{stage}_iter")]
    if not ends or not inside:
        raise SystemExit(f"{checkpoints}: no stage{stage}_end checkpoint, or none from inside stage {stage}.")
    after, before = load_checkpoint(ends[0]), load_checkpoint(inside[-1])
    cfg, (obs_dim, act_dim) = after["config"], after["dims"]
    task = cfg["env"]["task"]
    actor, old = saved_actor(after, obs_dim, act_dim, "latent"), saved_decoder(before, obs_dim, act_dim)
    began = time.time()
    data = collect(actor, old, cfg)
    print(f"collected {data.shape[0]} rows in {time.time() - began:.0f} s")
    result = {"run": "/".join(run_dir.parts[-2:]), "stage": stage, "rows": data.shape[0],
              "episodes": BOUNDARY_EPISODES, "data_policy": _score(task, make_gorl_policy(actor, old), ExplorationType.RANDOM),
              "refit": {key: cfg["refit"][key] for key in ("batch_size", "lr", "patience", "num_noise_samples")},
              "budgets": []}
    loss_cls = FlowMatchingLoss if cfg["decoder"]["type"] == "flow" else DiffusionLoss
    for max_epochs, clip_at in [(epochs, None) for epochs in budgets] + [(epochs, clip) for epochs in budgets
                                                                          if clip is not None]:
        began = time.time()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg["env"]["seed"])
            decoder = saved_decoder(after, obs_dim, act_dim, load=False)  # from scratch, as the run's refits
            fit = refit_decoder(loss_cls(decoder, num_noise_samples=cfg["refit"]["num_noise_samples"]), data,
                                batch_size=cfg["refit"]["batch_size"], lr=cfg["refit"]["lr"], max_epochs=max_epochs,
                                patience=cfg["refit"]["patience"], val_fraction=cfg["refit"]["val_fraction"],
                                max_samples=cfg["refit"]["max_samples"], action_clip=clip_at,
                                seed=batch_seed(cfg["env"]["seed"], stage, 0, kind=4))
        entry = {"max_epochs": max_epochs, "clip": clip_at, "epochs_run": fit.epochs_run, "best_epoch": fit.best_epoch,
                 "best_val_loss": round(fit.best_val_loss, 3), "minutes": round((time.time() - began) / 60, 1),
                 "val_losses": [round(v, 3) for v in fit.val_losses],
                 "prior": _score(task, make_prior_policy(decoder), ExplorationType.RANDOM),
                 "prior_mean": _score(task, make_prior_policy(decoder), ExplorationType.DETERMINISTIC)}
        print({k: v for k, v in entry.items() if k != "val_losses"})
        result["budgets"].append(entry)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a GoRL run directory, named <method>/seed<k>")
    parser.add_argument("checkpoints", help="every checkpoint the run wrote (it keeps only its last)")
    parser.add_argument("--stage", type=int, default=1, help="the stage end whose refit is redone")
    parser.add_argument("--epochs", type=int, nargs="+", default=[30, 150], help="max_epochs of each refit")
    parser.add_argument("--clip", type=float, default=None,
                        help="also refit on the pre-tanh actions clamped to [-CLIP, CLIP] (3: tanh 0.995)")
    args = parser.parse_args()
    run = pathlib.Path(args.run).resolve()
    result = refit_budgets(run, pathlib.Path(args.checkpoints), args.stage, args.epochs, args.clip)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{run.parent.name}_{run.name}_stage{args.stage}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path.relative_to(ROOT)}; now run: python benchmarks/hopper_15m.py report")


if __name__ == "__main__":
    main()
