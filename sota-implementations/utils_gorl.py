"""What the scripts (gorl_ppo.py, ppo_gaussian.py, fpo.py, dppo.py) share: the config turned into objects (envs,
models, losses, the collector, the PPO update, the schedule) and :class:`Run`, which evaluates, logs and checkpoints
the loop the scripts write out. The machinery is in the library (:mod:`torchrl_gorl.training`,
:mod:`torchrl_gorl.collectors`)."""
from __future__ import annotations

import functools
import logging
import pathlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDictBase
from torchrl.checkpoint import CheckpointError, GlobalRNGState
from torchrl.envs import EnvBase

from torchrl_gorl import (
    DiffusionDecoderModule,
    DiffusionLoss,
    DPPOLoss,
    FlowDecoderModule,
    FlowMatchingLoss,
    FlowPolicy,
    FPOLoss,
    GMPOLoss,
    LatentPriorLoss,
    make_latent_actor,
    make_latent_ppo_loss,
    make_value_network,
    ObservationNormalizer,
)
from torchrl_gorl import collectors, config_readers
from torchrl_gorl.config_readers import (
    frames_per_iteration,
    full_episode_batches,
    has_runtime_state,
    make_schedule,
    resolve_gamma,
    stage_hparams,
    stagger_episodes,
)
from torchrl_gorl.configs import validate_config
from torchrl_gorl.envs import make_env, make_single_env, task_id
from torchrl_gorl.training import (
    batch_seed,
    check_checkpoint_dir,
    check_writable,
    eval_points,
    load_checkpoint,
    PPOUpdate,
    remove_temporary_files,
    RunLogger,
    stage_value,
    TrainingRun,
    TRANSITION_KEYS,
)

log = logging.getLogger("gorl")

DECODERS = {"flow": (FlowDecoderModule, FlowMatchingLoss), "diffusion": (DiffusionDecoderModule, DiffusionLoss)}


# --------------------------------------------------------------------------- setup
def get_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"config key device is {name!r} but CUDA is not available here (torch {torch.__version__}): "
                         "use device=cpu, or device=auto to take a GPU only when there is one.")
    return device


def quiet_logs() -> None:
    """dm_control's absl logs (renderer choice, a deprecated MJCF attribute) say nothing about the run."""
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # Playground runs: "no TPU backend" notes


def set_threads(num_threads: int | None) -> None:
    """``num_threads`` (typed in the config: a positive integer or null, torch's default)."""
    if num_threads is not None:
        torch.set_num_threads(num_threads)


#: when :func:`setup` began: the start of the run's wall-clock (None outside a script)
RUN_STARTED: float | None = None


def setup(cfg: DictConfig, *, method: str) -> tuple[torch.device, str, float, dict[str, Any] | None]:
    """Checks the config, sets threads and seeds; returns the device, task, discount and the checkpoint to resume.
    Starts the run's clock: the training wall time counts start-up (env builds, physics compiles, Ray) too."""
    global RUN_STARTED
    RUN_STARTED = time.time()
    quiet_logs()
    validate_config(cfg, method=method)
    device = get_device(cfg.device)
    set_threads(cfg.num_threads)
    seed_everything(cfg.env.seed)
    saved = None
    if cfg.checkpoint.resume:
        from hydra.utils import to_absolute_path

        path = to_absolute_path(cfg.checkpoint.resume)  # relative to where the command ran, not the run dir
        if not pathlib.Path(path).exists():
            raise ValueError(f"config key checkpoint.resume: no checkpoint at {path!r}.")
        try:  # tensors, plain containers and JSON only: a checkpoint cannot run code (see load_checkpoint)
            saved = {**load_checkpoint(path), "path": path}
        except (CheckpointError, FileNotFoundError) as error:
            raise ValueError(f"config key checkpoint.resume: {error}") from None
    check_checkpoint_dir(cfg.checkpoint.dir, None if saved is None else saved["path"])
    if saved is not None:  # the same run? Checked before any env, worker or model is built
        try:
            config_readers.check_resume_compatible(cfg, saved.get("config") or {})
        except ValueError as error:
            raise ValueError(f"checkpoint {saved['path']!r}: {error}") from None
    # outputs: fail now, not at the first checkpoint an hour in; and clear what a killed run's writes left
    check_writable(pathlib.Path.cwd(), "the run directory (hydra.run.dir)")
    check_writable(cfg.checkpoint.dir, "config key checkpoint.dir")
    remove_temporary_files(pathlib.Path.cwd(), cfg.checkpoint.dir)
    return device, task_id(cfg.env.task), resolve_gamma(cfg), saved


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- models
def env_factory(cfg: DictConfig, task: str, device: torch.device | None = None) -> Callable[[int], EnvBase]:
    """A picklable ``num_envs -> env`` of the configured ``env.backend``: what the collector (in this process, in
    worker processes or in Ray actors) and the evaluation build."""
    if cfg.env.backend == "playground":
        from torchrl_gorl.envs.playground import make_playground_env

        # ``task`` ("cheetah-run", "point_mass-easy") maps back to its Playground port
        return functools.partial(make_playground_env, task, impl=cfg.env.playground_impl, device=device)
    return functools.partial(make_env, task, backend=cfg.collector.env_backend)


def env_maker(cfg: DictConfig, task: str, num_envs: int, device: torch.device | None = None) -> Callable[[], EnvBase]:
    """A picklable constructor of ``num_envs`` envs (:func:`env_factory`)."""
    return functools.partial(env_factory(cfg, task, device), num_envs)


def env_dims(cfg: DictConfig, task: str) -> tuple[int, int]:
    """Observation and action sizes of the configured env (Playground ports may differ from dm_control)."""
    env = make_single_env(task) if cfg.env.backend == "dm_control" else env_maker(cfg, task, 1)()
    dims = env.observation_spec["observation"].shape[-1], env.action_spec.shape[-1]
    env.close()
    return dims


def make_encoder(cfg: DictConfig, obs_dim: int, act_dim: int, device, latent_key: str = "latent"):
    """Latent actor and critic sharing one running observation normaliser (as the reference)."""
    norm = ObservationNormalizer(obs_dim).to(device) if cfg.encoder.normalize_observations else None
    actor = make_latent_actor(
        obs_dim, act_dim, num_cells=tuple(cfg.encoder.num_cells), observation_norm=norm, latent_key=latent_key, device=device
    )
    critic = make_value_network(obs_dim, num_cells=tuple(cfg.encoder.critic_num_cells), observation_norm=norm, device=device)
    return actor, critic, norm


def make_decoder(cfg: DictConfig, obs_dim: int, act_dim: int, device, *, identity: bool = False):
    decoder_cls, _ = DECODERS[cfg.decoder.type]
    kwargs = {"num_cells": tuple(cfg.decoder.num_cells), "device": device}
    if cfg.decoder.type == "flow":
        kwargs["num_steps"] = cfg.decoder.num_steps
    else:
        kwargs["num_diffusion_steps"] = cfg.decoder.num_diffusion_steps
    decoder = decoder_cls(obs_dim, act_dim, **kwargs)
    return decoder.reset_to_identity() if identity else decoder


def make_flow_policy(cfg: DictConfig, obs_dim: int, act_dim: int, device, method: str):
    """The direct baselines' flow policy and a critic sharing its observation normaliser (as the reference)."""
    flow = FlowDecoderModule(obs_dim, act_dim, num_cells=tuple(cfg.policy.num_cells), num_steps=cfg.policy.num_steps,
                             output_scale=cfg.policy.output_scale, device=device)
    if method == "fpo":
        policy = FlowPolicy(flow, record="fpo", num_mc_samples=cfg.fpo.num_mc_samples, t_sampling=cfg.fpo.t_sampling,
                            cfm_weighting=cfg.fpo.cfm_weighting)
    else:
        policy = FlowPolicy(flow, record="dppo", sde_sigma=cfg.dppo.sde_sigma, log_prob_min_std=cfg.dppo.log_prob_min_std,
                            noise_clip=cfg.dppo.noise_clip)
    critic = make_value_network(obs_dim, num_cells=tuple(cfg.encoder.critic_num_cells),
                                observation_norm=flow.observation_norm, device=device)
    # without normalisation the statistics stay at loc 0, scale 1: the normaliser is the identity
    return policy, critic, flow.observation_norm if cfg.encoder.normalize_observations else None


def make_flow_policy_loss(cfg: DictConfig, policy, critic, method: str):
    """FPOLoss or DPPOLoss; the clip range comes from ``schedule.clip_epsilon`` like the other methods'."""
    common = dict(clip_epsilon=stage_value(cfg.schedule.clip_epsilon, 0), critic_coeff=cfg.ppo.critic_coeff,
                  loss_critic_type=cfg.ppo.loss_critic_type, normalize_advantage=cfg.ppo.normalize_advantage)
    if method == "fpo":
        return FPOLoss(policy, critic, ratio=cfg.fpo.ratio, log_ratio_clip=cfg.fpo.log_ratio_clip, **common)
    clamp = cfg.dppo.log_prob_clamp
    return DPPOLoss(policy, critic, num_finetune_steps=cfg.dppo.num_finetune_steps, aggregate=cfg.dppo.aggregate,
                    log_prob_clamp=None if clamp is None else tuple(clamp), denoising_discount=cfg.dppo.denoising_discount,
                    clip_epsilon_base=cfg.dppo.clip_epsilon_base, **common)


def make_decoder_loss(cfg: DictConfig, decoder):
    """The refit objective: the decoder's generative loss, GMPO-weighted with ``schedule.decoder_refit=weighted``."""
    if cfg.schedule.decoder_refit == "weighted":
        return GMPOLoss(decoder, beta=cfg.refit.gmpo_beta, max_weight=cfg.refit.gmpo_max_weight,
                        num_noise_samples=cfg.refit.num_noise_samples)
    _, loss_cls = DECODERS[cfg.decoder.type]
    return loss_cls(decoder, num_noise_samples=cfg.refit.num_noise_samples)


def decoder_data(cfg: DictConfig, data: TensorDictBase, ppo: PPOUpdate) -> TensorDictBase:
    """Flat decoder-refit rows of a ``[num_envs, T]`` batch: (observation, pre-squash action), plus the
    stage critic's GAE advantage, standardised per batch, for a weighted refit, and the transition keys
    for an offline dataset when it is saved."""
    keys = ["observation", "action"]
    if cfg.schedule.save_decoder_data:
        keys += [key for key in TRANSITION_KEYS if key not in keys]
    rows = data.select(*keys)
    if cfg.schedule.decoder_refit == "weighted":
        advantage = ppo.advantages(data)
        rows.set("advantage", (advantage - advantage.mean()) / advantage.std().clamp_min(1e-6))
    return rows.reshape(-1)


# --------------------------------------------------------------------------- collection
def make_collector(cfg: DictConfig, task: str, policy, device: torch.device):
    """The ``collector`` section as :func:`torchrl_gorl.collectors.make_collector`: ``collector.num_envs x
    unroll_length`` env steps per batch, from this process, worker processes or Ray actors."""
    return collectors.make_collector(
        env_factory(cfg, task, train_env_device(cfg, device)), policy,
        num_envs=cfg.collector.num_envs, frames_per_batch=frames_per_iteration(cfg),
        num_workers=cfg.collector.num_workers, backend=cfg.collector.backend, full_episodes=full_episode_batches(cfg),
        seed=batch_seed(cfg.env.seed, 0, 0, kind=6), stagger_episodes=stagger_episodes(cfg),
        compile_policy=cfg.collector.compile_policy, device=device, env_device=train_env_device(cfg, device),
        ray_address=cfg.collector.get("ray_address"))


def train_env_device(cfg: DictConfig, device: torch.device) -> torch.device:
    """Where the env's tensors live: dm_control steps on the CPU; Playground on the run's device."""
    return device if cfg.env.backend == "playground" else torch.device("cpu")


def make_eval_env(cfg: DictConfig, task: str, device: torch.device) -> EnvBase:
    """``eval.num_envs`` envs of the training backend for the deterministic evaluations."""
    return env_maker(cfg, task, cfg.eval.num_envs, train_env_device(cfg, device))()


# --------------------------------------------------------------------------- PPO
def make_ppo_update(cfg: DictConfig, actor, critic, gamma: float, device: torch.device,
                    observation_norm: ObservationNormalizer | None = None, loss=None) -> PPOUpdate:
    """The library's :class:`~torchrl_gorl.training.PPOUpdate` from the ``ppo`` section and stage 0's values.

    By default the loss is TorchRL's ``ClipPPOLoss`` on the latent plus the latent regulariser (GoRL, Gaussian PPO);
    ``loss`` swaps in another ``ClipPPOLoss`` subclass (FPO, DPPO), without regulariser.
    """
    prior = None
    functional = not cfg.ppo.compile_step  # the one-graph step differentiates through the modules themselves
    if loss is None:
        loss = make_latent_ppo_loss(actor, critic, clip_epsilon=stage_value(cfg.schedule.clip_epsilon, 0),
                                    entropy_coeff=cfg.ppo.entropy_coeff, critic_coeff=cfg.ppo.critic_coeff,
                                    loss_critic_type=cfg.ppo.loss_critic_type,
                                    normalize_advantage=cfg.ppo.normalize_advantage, functional=functional)
        prior = LatentPriorLoss(actor, coeff=stage_value(cfg.schedule.latent_prior_coeff, 0),
                                mode=cfg.ppo.latent_prior, functional=functional)
    elif not functional:
        raise ValueError(f"config key ppo.compile_step=true supports the latent PPO loss of gorl_ppo.py and "
                         f"ppo_gaussian.py only, not {type(loss).__name__}.")
    return PPOUpdate(actor, critic, loss, prior=prior, gamma=gamma, lmbda=cfg.ppo.gae_lambda, lr=cfg.ppo.lr,
                     epochs=cfg.ppo.epochs, minibatch_size=frames_per_iteration(cfg) // cfg.ppo.num_minibatches,
                     max_grad_norm=stage_value(cfg.schedule.max_grad_norm, 0), reward_scale=cfg.env.reward_scale,
                     num_threads=cfg.ppo.num_threads, compile=cfg.ppo.compile, compile_step=cfg.ppo.compile_step,
                     compile_backend=cfg.ppo.compile_backend, observation_norm=observation_norm, device=device)


def check_resume_compatible(cfg: DictConfig, saved: dict[str, Any], obs_dim: int, act_dim: int) -> None:
    """A resumed run must be the same run: the same env sizes and the same settings
    (:func:`~torchrl_gorl.config_readers.check_resume_compatible`)."""
    config_readers.check_resume_compatible(cfg, saved.get("config") or {})  # the format first, then every key
    if saved.get("dims") != [obs_dim, act_dim]:
        raise ValueError(f"config key env.task: checkpoint dims {saved.get('dims')} != this task's {[obs_dim, act_dim]}.")


# --------------------------------------------------------------------------- the run: evaluation, logs, checkpoints
def make_run(cfg: DictConfig, *, algo: str, title: str, task: str, device: torch.device, dims: tuple[int, int],
             saved: dict[str, Any] | None, **modules: Any) -> TrainingRun:
    """The run's :class:`~torchrl_gorl.training.TrainingRun` (``modules``: policy, actor, critic, ppo, collector,
    eval_env and GoRL's decoder) from the ``eval``, ``checkpoint`` and ``logger`` sections; resumed from ``saved``
    after checking that it is a checkpoint of this run (:func:`check_resume_compatible`)."""
    rng = GlobalRNGState().state_dict()
    logger = make_run_logger(cfg, algo, task)
    GlobalRNGState().load_state_dict(rng)  # logging backends (wandb) draw random numbers: results must not depend on them
    run = TrainingRun(**modules, logger=logger, seed=cfg.env.seed, num_eval_episodes=cfg.eval.num_episodes,
                      target_return=cfg.eval.target_return, checkpoint_dir=cfg.checkpoint.dir,
                      checkpoint_interval=cfg.checkpoint.interval_frames or 0, keep_all=cfg.checkpoint.keep_all,
                      keep_best=cfg.checkpoint.keep_best, reseed_envs=full_episode_batches(cfg),
                      config=OmegaConf.to_container(cfg, resolve=True), title=title, device=device,
                      started=RUN_STARTED, info={"dims": list(dims)})
    if saved is None:
        return run
    try:
        check_resume_compatible(cfg, saved, *dims)
    except ValueError as error:
        raise ValueError(f"checkpoint {saved.get('path', '')!r}: {error}") from None
    if not full_episode_batches(cfg) and (saved.get("collector") is None or not has_runtime_state(cfg)):
        why = ("the checkpoint has no collector state" if has_runtime_state(cfg)
               else f"env.backend={cfg.env.backend} with collector.env_backend={cfg.collector.env_backend} has no "
                    "runtime state to save")
        log.warning("collector.unroll_length is set but %s: the resumed run starts fresh episodes and does not "
                    "repeat the uninterrupted run exactly.", why)
    run.restore(saved)
    return run


def train_single_stage(run: TrainingRun, cfg: DictConfig, num_evals: int) -> None:
    """The baselines' loop (ppo_gaussian.py, fpo.py, dppo.py): one PPO stage with stage-0 settings for GoRL's whole
    env-step budget (encoder PPO plus decoder data), evaluated ``num_evals`` times; gorl_ppo.py's encoder stage."""
    schedule = make_schedule(cfg).single_stage()
    run.progress_bar(schedule.total_frames, cfg.logger.progress_bar)
    if run.state.stage > 0:  # resumed after the stage: only the final evaluation is left
        return
    hparams = stage_hparams(cfg, 0)
    run.start_stage(0, hparams)
    num_iterations = schedule.iterations[0]
    evals = eval_points(num_iterations, num_evals)
    for iteration in range(run.state.iteration, num_iterations):
        if iteration in evals and run.evaluate(0, iteration):
            break
        data = run.collect(batch_seed(run.seed, 0, iteration, kind=1))
        metrics = run.ppo.update(data)
        if run.ppo.observation_norm is not None:
            run.ppo.observation_norm.update(data["observation"])
        run.collector.update_policy_weights_()
        run.end_iteration(0, iteration, data, metrics, hparams)
    else:
        run.evaluate(0, num_iterations)
    run.load_best_encoder()
    run.end_stage(0, 1)


def make_run_logger(cfg: DictConfig, algo: str, task: str) -> RunLogger:
    """The ``logger`` section as a :class:`~torchrl_gorl.training.RunLogger` (the whole config goes to wandb)."""
    wandb_kwargs = None
    if cfg.logger.backend == "wandb":
        wandb_kwargs = {"config": OmegaConf.to_container(cfg, resolve=True), "project": cfg.logger.project,
                        "group": cfg.logger.group, "mode": cfg.logger.wandb_mode}
    return RunLogger(cfg.logger.backend, algo, f"{cfg.logger.exp_name}_{task}", wandb_kwargs=wandb_kwargs)


def train_flow_policy(cfg: DictConfig, method: str) -> dict:
    """The whole run of a direct flow-policy baseline (fpo.py, dppo.py): ``method`` is ``"fpo"`` or ``"dppo"``."""
    # ---------------------------------------------------------------- config
    device, task, gamma, saved = setup(cfg, method=method)

    # ---------------------------------------------------------------- models
    obs_dim, act_dim = env_dims(cfg, task)
    policy, critic, observation_norm = make_flow_policy(cfg, obs_dim, act_dim, device, method=method)

    # ---------------------------------------------------------------- collector and eval env
    collector = make_collector(cfg, task, policy, device)
    eval_env = make_eval_env(cfg, task, device)

    # ---------------------------------------------------------------- loss: FPOLoss or DPPOLoss
    loss = make_flow_policy_loss(cfg, policy, critic, method=method)
    ppo = make_ppo_update(cfg, policy, critic, gamma, device, observation_norm, loss=loss)

    # ---------------------------------------------------------------- run state, fresh or resumed
    run = make_run(cfg, algo=method.upper(), title=f"{method.upper()} {task}, seed {cfg.env.seed}", task=task,
                   device=device, dims=(obs_dim, act_dim), saved=saved, policy=policy, actor=policy, critic=critic,
                   ppo=ppo, collector=collector, eval_env=eval_env)

    # ---------------------------------------------------------------- training: one stage
    train_single_stage(run, cfg, num_evals=cfg.eval.num_evals * cfg.schedule.num_stages)
    extra = {"ratio": cfg.fpo.ratio} if method == "fpo" else {}
    return run.finish(task=task, algorithm=method, **extra)
