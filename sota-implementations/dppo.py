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

import hydra
from omegaconf import DictConfig

from utils_gorl import train_flow_policy  # fpo.py's run, with FlowPolicy(record="dppo") and DPPOLoss


@hydra.main(config_path="config", config_name="dppo", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    return train_flow_policy(cfg, "dppo")


if __name__ == "__main__":
    main()
