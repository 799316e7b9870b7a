"""GMPO (arXiv 2412.01245) offline on dm_control data saved by a GoRL run, as a TorchRL replay buffer.

IQL critics (expectile V, double Q) are fit to the dataset's transitions; then a flow or diffusion
policy, trained from scratch as in GenerativeRL, fits the dataset's actions by its own generative loss
weighted by ``min(exp(beta (Q - V)), w_max)`` (``GMPOLoss``). Evaluation is the online protocol:
deterministic (zero latent), full 1000-step episodes, undiscounted return.

    python sota-implementations/gorl_ppo.py schedule.save_decoder_data=true         # writes datasets/stage<k>
    python sota-implementations/gmpo.py dataset.paths=[<run dir>/datasets/stage0,<run dir>/datasets/stage1]
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from torchrl_gorl import GMPOLoss
from utils_offline import fit, load_dataset, make_decoder, OfflineRun, setup_offline, train_critics


@hydra.main(config_path="config", config_name="gmpo", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    # ---------------------------------------------------------------- config and data
    device, task = setup_offline(cfg, "gmpo")
    buffer, data = load_dataset(cfg, device)
    run = OfflineRun(cfg, "GMPO", task, data)

    # ---------------------------------------------------------------- critics: IQL
    critic = train_critics(cfg, buffer, data, device, run)

    # ---------------------------------------------------------------- policy: advantage-weighted generative loss
    decoder = make_decoder(cfg, data, device)
    loss = GMPOLoss(decoder, beta=cfg.policy.beta, max_weight=cfg.policy.max_weight, critic=critic,
                    num_noise_samples=cfg.policy.num_noise_samples)

    def after_step(step: int) -> None:
        if step % cfg.eval.interval == 0:
            run.evaluate(decoder, "policy", step)

    fit(loss, ("loss_gmpo",), decoder.parameters(), buffer, cfg.policy.steps, cfg.policy.lr,
        after_step=after_step, log=lambda m, s: run.log("policy", m, s))
    return run.finish(decoder, cfg.policy.steps, algorithm="gmpo", decoder=cfg.decoder.type)


if __name__ == "__main__":
    main()
