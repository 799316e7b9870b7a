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
import tqdm
from omegaconf import DictConfig

from torchrl_gorl.envs import make_env
from utils_gorl import (
    EncoderRun,
    env_dims,
    frames_per_iteration,
    LatentPPO,
    make_collector,
    make_encoder,
    setup,
    stage_hparams,
    total_interaction_frames,
)


@hydra.main(config_path="config", config_name="ppo_gaussian", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    # ---------------------------------------------------------------- config
    device, task, gamma, saved = setup(cfg, with_decoder=False)
    seed = cfg.env.seed
    num_iterations = total_interaction_frames(cfg) // frames_per_iteration(cfg)  # GoRL's whole budget

    # ---------------------------------------------------------------- models
    obs_dim, act_dim = env_dims(task)
    actor, critic, observation_norm = make_encoder(cfg, obs_dim, act_dim, device, latent_key="action")

    # ---------------------------------------------------------------- collector and eval env
    collector = make_collector(cfg, task, actor, device)
    eval_env = make_env(task, cfg.eval.num_envs, backend=cfg.collector.env_backend)

    # ---------------------------------------------------------------- loss
    ppo = LatentPPO(cfg, actor, critic, gamma, device, observation_norm)

    # ---------------------------------------------------------------- run state, fresh or resumed
    run = EncoderRun(cfg, algo="PPO", task=task, device=device, dims=(obs_dim, act_dim), policy=actor,
                     actor=actor, critic=critic, ppo=ppo, collector=collector, eval_env=eval_env)
    if saved is not None:
        run.restore(saved)

    # ---------------------------------------------------------------- training: one stage, stage-0 settings
    run.pbar = tqdm.tqdm(total=num_iterations * frames_per_iteration(cfg), initial=run.total_frames(),
                         disable=not cfg.logger.progress_bar)
    if run.progress["stage"] == 0:
        hparams = stage_hparams(cfg, 0)
        run.start_stage(0, hparams, None)
        run.train_stage(0, num_iterations, cfg.eval.num_evals * cfg.schedule.num_stages, hparams)
        run.load_best_encoder()
        run.end_stage(0, 1)
    return run.finish(f"Gaussian PPO {task}, seed {seed}", algorithm="ppo_gaussian")


if __name__ == "__main__":
    main()
