"""DPPO baseline (the denoising MDP of arXiv 2409.00588, as GoRL's ``denoising_mdp`` runs it) on dm_control,
on the same utils, collector, evaluation and logging as gorl_ppo.py.

The flow policy of fpo.py samples with Euler-Maruyama steps of fixed noise sigma = 0.05, which makes
each of its 10 steps a Gaussian with an exact likelihood; PPO-clip (0.2) acts on the per-step ratios,
all steps sharing the environment step's advantage (``DPPOLoss``). The original DPPO's options
(``dppo.num_finetune_steps``, ``dppo.log_prob_clamp``, ``dppo.aggregate=mean``, ``dppo.denoising_discount``,
``dppo.clip_epsilon_base``, ``dppo.log_prob_min_std``, ``dppo.noise_clip``) are config keys; see
baselines.md §2. One stage for GoRL's whole env-step budget, as ppo_gaussian.py.

    python sota-implementations/dppo.py                        # CPU preset, cheetah-run
    python sota-implementations/dppo.py preset=smoke
"""
from __future__ import annotations

import functools

import hydra
from omegaconf import DictConfig

from torchrl_gorl import DPPOLoss
from utils_gorl import clip_loss_kwargs, env_dims, make_baseline_run, make_flow_policy, setup, train_single_stage


@hydra.main(config_path="config", config_name="dppo", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    # ---------------------------------------------------------------- config
    device, task, gamma, saved = setup(cfg, method="dppo")

    # ---------------------------------------------------------------- models
    obs_dim, act_dim = env_dims(cfg, task)
    policy, critic, observation_norm = make_flow_policy(  # the flow policy itself is trained
        cfg, obs_dim, act_dim, device, record="dppo", sde_sigma=cfg.dppo.sde_sigma,
        log_prob_min_std=cfg.dppo.log_prob_min_std, noise_clip=cfg.dppo.noise_clip)

    # ---------------------------------------------------------------- loss: PPO-clip on the denoising steps' ratios
    clamp = cfg.dppo.log_prob_clamp
    loss = functools.partial(DPPOLoss, num_finetune_steps=cfg.dppo.num_finetune_steps, aggregate=cfg.dppo.aggregate,
                             log_prob_clamp=None if clamp is None else tuple(clamp),
                             denoising_discount=cfg.dppo.denoising_discount,
                             clip_epsilon_base=cfg.dppo.clip_epsilon_base, **clip_loss_kwargs(cfg))

    # ---------------------------------------------------------------- collector, eval env, PPO update: fresh or resumed
    run = make_baseline_run(cfg, algo="DPPO", title=f"DPPO {task}, seed {cfg.env.seed}", task=task, device=device,
                            gamma=gamma, saved=saved, dims=(obs_dim, act_dim), policy=policy, critic=critic,
                            observation_norm=observation_norm, loss=loss)

    # ---------------------------------------------------------------- training: one stage, stage-0 settings
    train_single_stage(run, cfg)
    return run.finish(task=task, algorithm="dppo")


if __name__ == "__main__":
    main()
