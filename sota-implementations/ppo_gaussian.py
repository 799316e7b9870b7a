"""Gaussian PPO baseline on dm_control, on the same utils, collector, evaluation and logging as gorl_ppo.py.

The policy is GoRL's latent actor writing the action directly (``tanh`` applied by the env), with
GoRL's stage-0 PPO settings (clip 0.15, global grad-norm clip 0.5, latent regulariser 5e-4,
entropy without tanh correction): it is exactly GoRL's stage 0 with its identity decoder, run for
GoRL's whole env-step budget (encoder PPO + decoder data). The comparison then isolates the decoder;
the reference compares against a differently tuned PPO (gorl-reference.md §6.1 and defect 17).

    python sota-implementations/ppo_gaussian.py                   # CPU preset, same budget as gorl_ppo.py
    python sota-implementations/ppo_gaussian.py preset=smoke
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from utils_gorl import env_dims, make_baseline_run, make_encoder, setup, train_single_stage


@hydra.main(config_path="config", config_name="ppo_gaussian", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    # ---------------------------------------------------------------- config
    device, task, gamma, saved = setup(cfg, method="ppo_gaussian")

    # ---------------------------------------------------------------- models
    obs_dim, act_dim = env_dims(cfg, task)
    # GoRL's latent actor writing the action: GoRL's stage 0 with its identity decoder
    policy, critic, observation_norm = make_encoder(cfg, obs_dim, act_dim, device, latent_key="action")

    # ---------------------------------------------------------------- collector, eval env, PPO update: fresh or resumed
    run = make_baseline_run(cfg, algo="PPO", title=f"Gaussian PPO {task}, seed {cfg.env.seed}", task=task,
                            device=device, gamma=gamma, saved=saved, dims=(obs_dim, act_dim), policy=policy,
                            critic=critic, observation_norm=observation_norm)

    # ---------------------------------------------------------------- training: one stage, stage-0 settings
    train_single_stage(run, cfg)
    return run.finish(task=task, algorithm="ppo_gaussian")


if __name__ == "__main__":
    main()
