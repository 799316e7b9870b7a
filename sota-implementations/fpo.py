"""FPO baseline (Flow Policy Optimization, arXiv 2507.21053) on dm_control, on the same utils, collector,
evaluation and logging as gorl_ppo.py.

The flow policy itself is trained: x_1 ~ N(0, I) goes through 10 Euler steps of a velocity network
(4x32 SiLU, output x0.25) to the pre-squash action; PPO-clip acts on exp(CFM loss difference) at the
8 (t, eps) pairs per action drawn at collection time (``FPOLoss``). Settings are GoRL's FPO
baseline (clip 0.05, lr 3e-4, per-sample ratios with the exponent clipped to +-3, no grad clipping,
no entropy term; baselines.md §1). Like ppo_gaussian.py it runs one stage for GoRL's whole env-step
budget, so the comparison is at equal interaction.

    python sota-implementations/fpo.py                         # CPU preset, cheetah-run
    python sota-implementations/fpo.py fpo.ratio=mean          # the FPO paper's ratio (mean before exp)
    python sota-implementations/fpo.py preset=smoke
"""
from __future__ import annotations

import functools

import hydra
from omegaconf import DictConfig

from torchrl_gorl import FPOLoss
from utils_gorl import clip_loss_kwargs, env_dims, make_baseline_run, make_flow_policy, setup, train_single_stage


@hydra.main(config_path="config", config_name="fpo", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    # ---------------------------------------------------------------- config
    device, task, gamma, saved = setup(cfg, method="fpo")

    # ---------------------------------------------------------------- models
    obs_dim, act_dim = env_dims(cfg, task)
    policy, critic, observation_norm = make_flow_policy(  # the flow policy itself is trained
        cfg, obs_dim, act_dim, device, record="fpo", num_mc_samples=cfg.fpo.num_mc_samples,
        t_sampling=cfg.fpo.t_sampling, cfm_weighting=cfg.fpo.cfm_weighting)

    # ---------------------------------------------------------------- loss: PPO-clip on exp(CFM loss difference)
    loss = functools.partial(FPOLoss, ratio=cfg.fpo.ratio, log_ratio_clip=cfg.fpo.log_ratio_clip,
                             **clip_loss_kwargs(cfg))

    # ---------------------------------------------------------------- collector, eval env, PPO update: fresh or resumed
    run = make_baseline_run(cfg, algo="FPO", title=f"FPO {task}, seed {cfg.env.seed}", task=task, device=device,
                            gamma=gamma, saved=saved, dims=(obs_dim, act_dim), policy=policy, critic=critic,
                            observation_norm=observation_norm, loss=loss)

    # ---------------------------------------------------------------- training: one stage, stage-0 settings
    train_single_stage(run, cfg)
    return run.finish(task=task, algorithm="fpo", ratio=cfg.fpo.ratio)


if __name__ == "__main__":
    main()
