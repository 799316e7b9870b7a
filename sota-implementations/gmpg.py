"""GMPG (arXiv 2412.01245) offline on dm_control data saved by a GoRL run, as a TorchRL replay buffer.

Three phases as GenerativeRL: a behaviour flow mu fit to the dataset's actions by flow matching, IQL
critics, then a policy flow initialised from mu and trained by the pathwise, KL-anchored policy
gradient ``-beta Q(s, a) + (log pi(a|s) - log mu(a|s)) / (d ln 2)`` through its Euler sampler
(``GMPGLoss``; exact divergence by default, ``policy.divergence=hutchinson`` for larger action sizes).

    python sota-implementations/gmpg.py dataset.paths=[<run dir>/datasets/stage0]
"""
from __future__ import annotations

import copy

import hydra
from omegaconf import DictConfig
from tensordict import TensorDict

from torchrl_gorl import FlowMatchingLoss, GMPGLoss
from utils_offline import fit, load_dataset, make_decoder, OfflineRun, setup_offline, train_critics


@hydra.main(config_path="config", config_name="gmpg", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    # ---------------------------------------------------------------- config and data
    device, task = setup_offline(cfg, "gmpg")
    buffer, data = load_dataset(cfg, device)
    run = OfflineRun(cfg, "GMPG", task, data)

    # ---------------------------------------------------------------- behaviour flow: flow matching on the data
    behaviour = make_decoder(cfg, data, device)
    fit(FlowMatchingLoss(behaviour), ("loss_flow_matching",), behaviour.parameters(), buffer, cfg.behaviour.steps,
        cfg.behaviour.lr, log=lambda m, s: run.log("behaviour", m, s))
    run.evaluate(behaviour, "behaviour", cfg.behaviour.steps)

    # ---------------------------------------------------------------- critics: IQL
    critic = train_critics(cfg, buffer, data, device, run)

    # ---------------------------------------------------------------- policy: pathwise gradient from mu
    policy = copy.deepcopy(behaviour)
    loss = GMPGLoss(policy, behaviour, critic, beta=cfg.policy.beta, divergence=cfg.policy.divergence)

    def observations() -> TensorDict:  # GMPG reads states only
        return buffer.sample(cfg.policy.batch_size).select("observation")

    def after_step(step: int) -> None:
        if step % cfg.eval.interval == 0:
            run.evaluate(policy, "policy", step)

    fit(loss, ("loss_gmpg",), policy.parameters(), buffer, cfg.policy.steps, cfg.policy.lr,
        after_step=after_step, log=lambda m, s: run.log("policy", m, s), batch=observations)
    return run.finish(policy, cfg.policy.steps, algorithm="gmpg", decoder="flow")


if __name__ == "__main__":
    main()
