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

import hydra
from omegaconf import DictConfig

from utils_gorl import train_flow_policy


@hydra.main(config_path="config", config_name="fpo", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    return train_flow_policy(cfg, "fpo")


if __name__ == "__main__":
    main()
