"""GoRL with PPO in latent space on dm_control (arXiv 2512.02581).

Stage k: train a Gaussian latent policy by PPO against the frozen decoder D_{k-1} (stage 0: the
exact identity), keep the encoder with the best deterministic evaluation, collect decoder data
with stochastic latents through it, and refit the decoder on (observation, pre-squash action).

    python sota-implementations/gorl_ppo.py                      # CPU preset, cheetah-run
    python sota-implementations/gorl_ppo.py preset=smoke         # two stages in about a minute
    python sota-implementations/gorl_ppo.py preset=paper env.task=HopperStand decoder.type=diffusion

Every env step is counted: encoder PPO (``frames/encoder``), decoder data
(``frames/decoder_data``) and evaluation (``frames/eval``, logged apart). Plots and the logger's
step use ``frames/total`` = encoder + decoder data.
"""
from __future__ import annotations

import copy

import hydra
import torch
from omegaconf import DictConfig

from torchrl_gorl import make_gorl_policy
from torchrl_gorl.training import batch_seed, decoder_rows, eval_points, refit_decoder, save_transitions
from utils_gorl import (
    env_dims,
    log,
    make_collector,
    make_decoder,
    make_decoder_loss,
    make_encoder,
    make_eval_env,
    make_ppo_update,
    make_run,
    make_schedule,
    setup,
    stage_hparams,
)


@hydra.main(config_path="config", config_name="gorl_ppo", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    # ---------------------------------------------------------------- config
    device, task, gamma, saved = setup(cfg, method="gorl")
    schedule = make_schedule(cfg)
    seed = cfg.env.seed

    # ---------------------------------------------------------------- models
    obs_dim, act_dim = env_dims(cfg, task)
    actor, critic, observation_norm = make_encoder(cfg, obs_dim, act_dim, device)
    # the reference rebuilds the encoder from the same seed each stage: keep its initial weights
    initial_encoder = copy.deepcopy({"actor": actor.state_dict(), "critic": critic.state_dict()})
    with torch.random.fork_rng(devices=[]):  # leaves the training RNG stream as in ppo_gaussian.py
        decoder = make_decoder(cfg, obs_dim, act_dim, device, identity=True)  # stage 0: a == z exactly
    policy = make_gorl_policy(actor, decoder)

    # ---------------------------------------------------------------- collector and eval env
    collector = make_collector(cfg, task, policy, device)
    eval_env = make_eval_env(cfg, task, device)

    # ---------------------------------------------------------------- losses
    ppo = make_ppo_update(cfg, actor, critic, gamma, device, observation_norm)

    # ---------------------------------------------------------------- run state, fresh or resumed
    run = make_run(cfg, algo="GoRL", title=f"GoRL ({cfg.decoder.type}) {task}, seed {seed}", task=task,
                   device=device, dims=(obs_dim, act_dim), saved=saved, policy=policy, actor=actor, critic=critic,
                   ppo=ppo, collector=collector, eval_env=eval_env, decoder=decoder)
    state = run.state  # counters, evaluation history, the stage's best encoder

    # ---------------------------------------------------------------- stage loop
    run.progress_bar(schedule.total_frames, cfg.logger.progress_bar)
    for stage in range(state.stage, schedule.num_stages):
        # encoder: PPO in latent space against the frozen decoder, from the initial encoder (encoder.init=scratch)
        reinit = stage > 0 and cfg.encoder.init == "scratch"
        hparams = stage_hparams(cfg, stage)
        run.start_stage(stage, hparams, initial_encoder if reinit else None)
        num_iterations = schedule.iterations[stage]
        evals = eval_points(num_iterations, cfg.eval.num_evals)
        for iteration in range(state.iteration, num_iterations):
            if iteration in evals and run.evaluate(stage, iteration):
                break  # eval.target_return reached: the run ends with this encoder
            data = run.collect(batch_seed(seed, stage, iteration, kind=1))  # [num_envs, T], a function of the seed
            metrics = ppo.update(data)  # GAE under the current critic, then minibatch epochs
            if observation_norm is not None:  # statistics move after the update: stored log-probs stay valid
                observation_norm.update(data["observation"])
            collector.update_policy_weights_()
            run.end_iteration(stage, iteration, data, metrics, hparams)  # counters, logs, checkpoints, Ctrl-C
        else:
            run.evaluate(stage, num_iterations)  # the last update is evaluated too (the reference skips it)
        run.load_best_encoder()  # the best encoder by deterministic evaluation goes on
        if state.target_reached:
            break

        if stage in schedule.refit_stages:
            # decoder data: stochastic latents through the current decoder, pre-squash actions stored
            # (plus the stage critic's advantages for a weighted refit, the transitions when saved)
            chunks = []
            for i in range(schedule.decoder_data_iterations):
                data = run.collect(batch_seed(seed, stage, i, kind=2))
                advantage = ppo.advantages(data) if cfg.schedule.decoder_refit == "weighted" else None
                chunks.append(decoder_rows(data, advantage=advantage, transitions=cfg.schedule.save_decoder_data))
                run.add_frames("decoder_data", data.numel())
            dataset = torch.cat(chunks)
            if cfg.schedule.save_decoder_data:  # offline data for gmpo.py / gmpg.py
                save_transitions(dataset, f"datasets/stage{stage}")

            # decoder refit: from scratch (same seed every stage, as the reference) or fine-tuned;
            # plain behaviour cloning (the reference) or GMPO-weighted by the stage's advantages
            # always a separate module: the deployed decoder must not move if no stage follows
            if cfg.schedule.decoder_init == "scratch":
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    target = make_decoder(cfg, obs_dim, act_dim, device)
            else:
                target = copy.deepcopy(decoder)
            log.info("stage %d: decoder refit on %d rows", stage, dataset.shape[0])
            result = refit_decoder(make_decoder_loss(cfg, target), dataset, batch_size=cfg.refit.batch_size,
                                   lr=cfg.refit.lr, max_epochs=cfg.refit.max_epochs, patience=cfg.refit.patience,
                                   val_fraction=cfg.refit.val_fraction, max_samples=cfg.refit.max_samples,
                                   action_clip=cfg.refit.action_clip, seed=batch_seed(seed, stage, 0, kind=4))
            if stage + 1 < schedule.num_stages:
                decoder.load_state_dict(target.state_dict())
                collector.update_policy_weights_()
            else:  # no encoder was trained against it: kept for a next stage, not deployed
                state.last_decoder = target.state_dict()

            # logging
            refit = {"stage": stage, "rows": dataset.shape[0], "best_val_loss": result.best_val_loss,
                     "best_epoch": result.best_epoch, "epochs_run": result.epochs_run}
            state.progress["refits"].append(refit)
            run.logger.log({f"refit/{k}": v for k, v in refit.items()}, state.total_frames)
        run.end_stage(stage, schedule.num_stages)

    return run.finish(task=task, algorithm="gorl_ppo", decoder=cfg.decoder.type)


if __name__ == "__main__":
    main()
