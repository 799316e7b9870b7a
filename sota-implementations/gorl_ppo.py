"""GoRL with PPO in latent space on dm_control (arXiv 2512.02581).

Stage k: train a Gaussian latent policy by PPO against the frozen decoder D_{k-1} (stage 0: the
exact identity), keep the encoder with the best deterministic evaluation, collect decoder data
with stochastic latents, and refit the decoder on (observation, pre-squash action) pairs.

    python sota-implementations/gorl_ppo.py                      # CPU preset, cheetah-run
    python sota-implementations/gorl_ppo.py preset=smoke         # two stages in about a minute
    python sota-implementations/gorl_ppo.py preset=paper env.task=HopperStand decoder.type=diffusion

Every env step is counted: encoder PPO (``frames/encoder``), decoder data
(``frames/decoder_data``) and evaluation (``frames/eval``, logged apart). Plots and the logger's
step use ``frames/total`` = encoder + decoder data.
"""
from __future__ import annotations

import copy
import logging
import time

import hydra
import torch
import tqdm
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict

from torchrl_gorl import make_gorl_policy
from torchrl_gorl.envs import make_env, task_id
from torchrl_gorl.training import evaluate_policy, get_rng_state, load_checkpoint, refit_decoder, save_checkpoint, set_rng_state
from utils_gorl import (
    batch_seed,
    check_resume_compatible,
    collect,
    env_dims,
    eval_points,
    frames_per_iteration,
    get_device,
    iterations_per_stage,
    LatentPPO,
    make_collector,
    make_decoder,
    make_decoder_loss,
    make_encoder,
    quiet_logs,
    refit_stages,
    resolve_gamma,
    RunLogger,
    seed_everything,
    set_threads,
    stage_hparams,
    total_interaction_frames,
    train_episode_metrics,
    validate_config,
)

log = logging.getLogger("gorl")


@hydra.main(config_path="config", config_name="gorl_ppo", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    # ---------------------------------------------------------------- config
    quiet_logs()
    validate_config(cfg)
    set_threads(cfg.num_threads)
    device = get_device(cfg.device)
    task, gamma, seed = task_id(cfg.env.task), resolve_gamma(cfg), cfg.env.seed
    seed_everything(seed)
    per_iteration = frames_per_iteration(cfg)
    stage_iterations = iterations_per_stage(cfg)
    saved = load_checkpoint(cfg.checkpoint.resume) if cfg.checkpoint.resume else None

    # ---------------------------------------------------------------- models
    obs_dim, act_dim = env_dims(task)
    if saved is not None:
        check_resume_compatible(cfg, saved, obs_dim, act_dim, with_decoder=True)
    actor, critic, _ = make_encoder(cfg, obs_dim, act_dim, device)
    initial_encoder = copy.deepcopy({"actor": actor.state_dict(), "critic": critic.state_dict()})
    decoder = make_decoder(cfg, obs_dim, act_dim, device, identity=True)  # stage 0: a == z exactly
    policy = make_gorl_policy(actor, decoder)

    # ---------------------------------------------------------------- collector and eval env
    collector = make_collector(cfg, task, policy, device)
    batches = iter(collector)
    eval_env = make_env(task, cfg.eval.num_envs)

    # ---------------------------------------------------------------- losses
    ppo = LatentPPO(cfg, actor, critic, gamma, device)

    # ---------------------------------------------------------------- state (fresh or resumed)
    progress = {"stage": 0, "iteration": 0, "frames_encoder": 0, "frames_decoder_data": 0, "frames_eval": 0,
                "best_return": -float("inf"), "eval_rows": [], "stage_starts": [0], "refits": [], "wall_time": 0.0}
    best_encoder = None
    if saved is not None:
        actor.load_state_dict(saved["actor"])
        critic.load_state_dict(saved["critic"])
        decoder.load_state_dict(saved["decoder"])
        ppo.load_state_dict(saved["ppo"])
        progress, best_encoder = saved["progress"], saved["best_encoder"]
        set_rng_state(saved["rng"])
        collector.update_policy_weights_()
        log.info("resumed from %s at stage %d, iteration %d", cfg.checkpoint.resume, progress["stage"], progress["iteration"])
    logger = RunLogger(cfg, "GoRL", task)
    logger.eval_rows = progress["eval_rows"]
    start = time.time() - progress["wall_time"]
    last_checkpoint = progress["frames_encoder"]

    def total_frames() -> int:
        return progress["frames_encoder"] + progress["frames_decoder_data"]

    def checkpoint(name: str) -> None:
        progress["wall_time"] = time.time() - start
        state = {
            "config": OmegaConf.to_container(cfg, resolve=True), "dims": [obs_dim, act_dim],
            "actor": actor.state_dict(), "critic": critic.state_dict(), "decoder": decoder.state_dict(),
            "ppo": ppo.state_dict(), "best_encoder": best_encoder, "progress": progress, "rng": get_rng_state(),
        }
        save_checkpoint(state, f"{cfg.checkpoint.dir}/{name if cfg.checkpoint.keep_all else 'latest'}.pt")

    def evaluate(stage: int, iteration: int) -> float:
        nonlocal best_encoder
        result = evaluate_policy(eval_env, policy, num_episodes=cfg.eval.num_episodes,
                                 seed=batch_seed(seed, stage, len(progress["eval_rows"]), kind=3))
        progress["frames_eval"] += result["frames"]
        row = {"stage": stage, "iteration": iteration, "frames_encoder": progress["frames_encoder"],
               "frames_decoder_data": progress["frames_decoder_data"], "frames_total": total_frames(),
               "frames_eval": progress["frames_eval"], **{k: v for k, v in result.items() if k != "frames"}}
        logger.log_eval(row)
        if result["return_mean"] >= progress["best_return"] - 1e-6:  # ties go to the later point, as the reference
            progress["best_return"] = result["return_mean"]
            best_encoder = copy.deepcopy({"actor": actor.state_dict(), "critic": critic.state_dict()})
        log.info("stage %d iteration %d: eval return %.1f +- %.1f (total env steps %d)",
                 stage, iteration, result["return_mean"], result["return_std"], total_frames())
        return result["return_mean"]

    # ---------------------------------------------------------------- stage loop
    pbar = tqdm.tqdm(total=total_interaction_frames(cfg), initial=total_frames(), disable=not cfg.logger.progress_bar)
    for stage in range(progress["stage"], cfg.schedule.num_stages):
        hparams = stage_hparams(cfg, stage)
        ppo.set_stage(hparams)
        if progress["iteration"] == 0:  # a new stage
            if stage > 0 and cfg.encoder.init == "scratch":  # the reference rebuilds the encoder with the same seed
                actor.load_state_dict(initial_encoder["actor"])
                critic.load_state_dict(initial_encoder["critic"])
            ppo.reset_optimizer()
            progress["best_return"], best_encoder = -float("inf"), None
            collector.update_policy_weights_()
        num_iterations = stage_iterations[stage]
        evals = eval_points(num_iterations, cfg.eval.num_evals)

        # encoder: PPO in latent space against the frozen decoder
        for iteration in range(progress["iteration"], num_iterations):
            if iteration in evals:
                evaluate(stage, iteration)
            data = collect(collector, batches, batch_seed(seed, stage, iteration, kind=1), device)
            metrics = {**train_episode_metrics(data), **ppo.update(data)}
            # statistics move after the update, so stored log-probs always match the collecting policy
            if cfg.encoder.normalize_observations:
                actor.module[0].module.observation_norm.update(data["observation"])
            collector.update_policy_weights_()
            progress["frames_encoder"] += data.numel()
            progress["iteration"] = iteration + 1
            pbar.update(data.numel())
            metrics.update({"stage": stage, "frames/encoder": progress["frames_encoder"],
                            "frames/decoder_data": progress["frames_decoder_data"],
                            "frames/eval": progress["frames_eval"], "frames/total": total_frames(),
                            "train/clip_epsilon": hparams["clip_epsilon"], "time/fps": total_frames() / (time.time() - start)})
            logger.log(metrics, total_frames())
            if cfg.checkpoint.interval_frames and progress["frames_encoder"] - last_checkpoint >= cfg.checkpoint.interval_frames:
                last_checkpoint = progress["frames_encoder"]
                checkpoint(f"stage{stage}_iter{iteration + 1:05d}")
        evaluate(stage, num_iterations)  # the last update is evaluated too (the reference skips it)

        # the best encoder by deterministic evaluation collects the decoder data
        actor.load_state_dict(best_encoder["actor"])
        critic.load_state_dict(best_encoder["critic"])
        collector.update_policy_weights_()
        if stage in refit_stages(cfg):
            chunks = []
            for i in range(cfg.schedule.decoder_data_iterations):  # stochastic latents, pre-squash actions
                data = collect(collector, batches, batch_seed(seed, stage, i, kind=2), device)
                chunks.append(TensorDict(observation=data["observation"], action=data["action"],
                                         reward=data["next", "reward"], batch_size=data.shape).reshape(-1))
                progress["frames_decoder_data"] += data.numel()
                pbar.update(data.numel())
            dataset = torch.cat(chunks)
            if cfg.schedule.decoder_init == "scratch":
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)  # the reference re-initialises with the same seed every stage
                    target = make_decoder(cfg, obs_dim, act_dim, device)
            else:
                target = decoder
            result = refit_decoder(make_decoder_loss(cfg, target), dataset, batch_size=cfg.refit.batch_size,
                                   lr=cfg.refit.lr, max_epochs=cfg.refit.max_epochs, patience=cfg.refit.patience,
                                   val_fraction=cfg.refit.val_fraction, max_samples=cfg.refit.max_samples,
                                   seed=batch_seed(seed, stage, 0, kind=4))
            decoder.load_state_dict(target.state_dict())
            collector.update_policy_weights_()
            progress["refits"].append({"stage": stage, "rows": dataset.shape[0], "best_val_loss": result.best_val_loss,
                                       "best_epoch": result.best_epoch, "epochs_run": result.epochs_run})
            logger.log({"refit/best_val_loss": result.best_val_loss, "refit/epochs_run": result.epochs_run,
                        "refit/rows": dataset.shape[0]}, total_frames())
            log.info("stage %d: decoder refit on %d rows, best val loss %.4f at epoch %d",
                     stage, dataset.shape[0], result.best_val_loss, result.best_epoch)
        progress["stage"], progress["iteration"] = stage + 1, 0
        if stage + 1 < cfg.schedule.num_stages:
            progress["stage_starts"].append(total_frames())
        checkpoint(f"stage{stage}_end")
    pbar.close()

    # ---------------------------------------------------------------- summary
    # the deployed policy (last stage's best encoder and its decoder) on fresh episodes: the
    # in-stage maximum that picked it is optimistically biased
    final = evaluate_policy(eval_env, policy, num_episodes=cfg.eval.num_episodes, seed=batch_seed(seed, 99, 0, kind=5))
    progress["frames_eval"] += final["frames"]
    collector.shutdown()
    eval_env.close()
    wall = time.time() - start
    summary = {
        "algorithm": "gorl_ppo", "decoder": cfg.decoder.type, "task": task, "seed": seed,
        "final_return": final["return_mean"], "final_return_std": final["return_std"],
        "best_eval_return": max(r["return_mean"] for r in logger.eval_rows),
        "frames_encoder": progress["frames_encoder"], "frames_decoder_data": progress["frames_decoder_data"],
        "frames_total": total_frames(), "frames_eval": progress["frames_eval"],
        "wall_time_s": wall, "fps": (total_frames() + progress["frames_eval"]) / wall, "refits": progress["refits"],
    }
    logger.write_outputs(summary, f"GoRL ({cfg.decoder.type}) {task}, seed {seed}", progress["stage_starts"][1:])
    log.info("done: final return %.1f (best eval %.1f), %d env steps in %.0f s", summary["final_return"],
             summary["best_eval_return"], summary["frames_total"], wall)
    return summary


if __name__ == "__main__":
    main()
