"""Shared pieces of the scripts (gorl_ppo.py, ppo_gaussian.py, fpo.py, dppo.py): config checks, env and
model factories, the collector, the PPO update, decoder data and refits, evaluation, logging, checkpoints."""
from __future__ import annotations

import contextlib
import copy
import csv
import functools
import io
import json
import logging
import os
import pathlib
import math
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import tqdm
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError
from tensordict import TensorDictBase
from torchrl.checkpoint import CheckpointError, GlobalRNGState
from torchrl.collectors import Collector
from torchrl.envs import EnvBase, EnvCreator
from torchrl.record.loggers import generate_exp_name, get_logger

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
from torchrl_gorl.collectors import (POLICY_COMPILE, MonitoredMultiSyncCollector, ResumableCollector,
                                     SeededCollector)
from torchrl_gorl.envs import default_gamma, EPISODE_LENGTH, make_env, make_single_env, resolve_task, task_id
from config_checks import validate_config
from torchrl_gorl.training import (
    PPOUpdate,
    atomic_write_bytes,
    atomic_write_text,
    check_writable,
    evaluate_policy,
    latest_checkpoint,
    load_checkpoint,
    remove_temporary_files,
    save_checkpoint,
    TRANSITION_KEYS,
)

log = logging.getLogger("gorl")

DECODERS = {"flow": (FlowDecoderModule, FlowMatchingLoss), "diffusion": (DiffusionDecoderModule, DiffusionLoss)}


def unroll_length(cfg: DictConfig) -> int:
    """Env steps per env in one PPO iteration: ``collector.unroll_length``, or one full episode (1000) when null."""
    return cfg.collector.unroll_length or EPISODE_LENGTH


def full_episode_batches(cfg: DictConfig) -> bool:
    """Whether every batch resets and reseeds all envs (``collector.unroll_length: null``), which makes each batch
    a function of its seed; otherwise the envs run on across batches (TorchRL's collector semantics)."""
    return cfg.collector.unroll_length is None


def frames_per_iteration(cfg: DictConfig) -> int:
    """``collector.num_envs x unroll_length`` env steps per PPO iteration."""
    return cfg.collector.num_envs * unroll_length(cfg)


def iterations_per_stage(cfg: DictConfig) -> list[int]:
    return [f // frames_per_iteration(cfg) for f in cfg.schedule.stage_frames]


def stage_value(table: Sequence[float], stage: int) -> float:
    """Entry ``stage`` of a per-stage table; the last entry repeats."""
    return float(table[min(stage, len(table) - 1)])


def stage_hparams(cfg: DictConfig, stage: int) -> dict[str, float]:
    prior = stage_value(cfg.schedule.latent_prior_coeff, stage)
    if stage == 0 and resolve_task(cfg.env.task) == ("ball_in_cup", "catch"):
        prior = 0.0  # as the reference
    return {
        "clip_epsilon": stage_value(cfg.schedule.clip_epsilon, stage),
        "max_grad_norm": stage_value(cfg.schedule.max_grad_norm, stage),
        "latent_prior_coeff": prior,
    }


def refit_stages(cfg: DictConfig) -> list[int]:
    last = cfg.schedule.num_stages - 1
    return [k for k in range(cfg.schedule.num_stages) if k < last or cfg.schedule.refit_last_stage]


def total_interaction_frames(cfg: DictConfig) -> int:
    """Env steps of a whole GoRL run: encoder PPO plus decoder data (evaluation not included)."""
    per_iteration = frames_per_iteration(cfg)
    encoder = sum(iterations_per_stage(cfg)) * per_iteration
    return encoder + len(refit_stages(cfg)) * cfg.schedule.decoder_data_iterations * per_iteration


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
    if num_threads is not None:
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"config key num_threads must be a positive integer or null, got {num_threads!r}.")
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
    existing = latest_checkpoint(cfg.checkpoint.dir) if pathlib.Path(cfg.checkpoint.dir).is_dir() else None
    if existing is not None and (saved is None or (pathlib.Path(saved["path"]).is_file()
                                                   and existing.resolve() != pathlib.Path(saved["path"]).resolve())):
        # its newer files would outrank (and the rotation would delete) every checkpoint this run writes
        raise ValueError(f"config key checkpoint.dir: {str(pathlib.Path(cfg.checkpoint.dir).resolve())!r} holds "
                         f"checkpoints up to {existing.name}, of an earlier run or a later point of this one: resume "
                         f"the latest with checkpoint.resume={existing.parent.resolve()}, or give this run another "
                         "checkpoint.dir (or hydra.run.dir).")
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
def env_maker(cfg: DictConfig, task: str, num_envs: int, device: torch.device | None = None) -> Callable[[], EnvBase]:
    """A picklable constructor of ``num_envs`` envs of the configured ``env.backend``: what the collector
    (in this process, in worker processes or in Ray actors) and the evaluation build."""
    if cfg.env.backend == "playground":
        from torchrl_gorl.envs.playground import make_playground_env

        # ``task`` ("cheetah-run", "point_mass-easy") maps back to its Playground port
        return functools.partial(make_playground_env, task, num_envs, impl=cfg.env.playground_impl, device=device)
    return functools.partial(make_env, task, num_envs, backend=cfg.collector.env_backend)


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
    """A collector of ``num_envs x unroll_length`` env steps per batch.

    With ``collector.unroll_length: null`` every batch is one full episode per env, all envs reset (after
    reseeding, see :func:`collect`) at each batch, which makes each batch a function of the policy and the seed
    alone: that is what makes resumed runs exact. With ``unroll_length=T`` the envs are seeded once and run on;
    resumed runs are exact through the collector's state dict (:class:`~torchrl_gorl.collectors.ResumableCollector`:
    the carried observations, the envs' physics and random states, and each worker's sampling RNG).
    ``collector.backend=local`` collects in this process (``num_workers=0``) or in TorchRL's
    multi-process sync collector (:class:`~torchrl_gorl.collectors.MonitoredMultiSyncCollector`: workers that
    ignore Ctrl-C, and a worker's death raises within seconds, naming it); ``ray`` in ``num_workers`` Ray actors
    (:func:`make_ray_collector`).
    """
    num_envs, workers = cfg.collector.num_envs, cfg.collector.num_workers
    env_device = train_env_device(cfg, device)
    common = dict(
        frames_per_batch=frames_per_iteration(cfg),
        total_frames=-1,
        reset_at_each_iter=full_episode_batches(cfg),
        policy_device=device,
        env_device=env_device,
        storing_device=device,
        auto_register_policy_transforms=False,
        compile_policy=POLICY_COMPILE if cfg.collector.compile_policy else None,
    )
    if cfg.collector.backend == "ray":
        collector = make_ray_collector(cfg, env_maker(cfg, task, num_envs // workers, env_device), policy, **common)
    elif workers == 0:
        collector = ResumableCollector(env_maker(cfg, task, num_envs, env_device)(), policy, **common)
    else:  # workers own their process: their state dicts carry their sampling RNG too
        # TorchRL's multi-process sync collector, whose workers ignore Ctrl-C (the main process handles it) and
        # whose death raises, naming the worker, instead of hanging a weight update
        create = EnvCreator(env_maker(cfg, task, num_envs // workers, env_device))
        collector = MonitoredMultiSyncCollector(
            [create] * workers, policy,
            collector_class=functools.partial(SeededCollector, stagger_episodes=stagger_episodes(cfg)), **common)
    if not full_episode_batches(cfg):  # seeded once: the envs run on, and reseeding resets them
        seed = batch_seed(cfg.env.seed, 0, 0, kind=6)
        collector.set_seed(seed)
        if cfg.collector.backend == "local" and workers == 0:  # (the multi-process and Ray workers reset themselves)
            collector.reset()  # seeding reset the envs: the first observations must be those of the seeded resets
            if stagger_episodes(cfg):
                collector.stagger_episodes(seed)
    return collector


def has_runtime_state(cfg: DictConfig) -> bool:
    """Whether the training envs expose their running state (:class:`~torchrl_gorl.envs.BatchedDMControlEnv`:
    physics, task RNG, the time limit's counter), which exact resume and staggering in unroll mode need; TorchRL's
    ``DMControlEnv`` and the Playground envs do not."""
    return cfg.env.backend == "dm_control" and cfg.collector.env_backend == "batched"


def stagger_episodes(cfg: DictConfig) -> bool:
    """Whether envs that run on get their first episodes cut short by random amounts (``collector.stagger_episodes``,
    unroll mode, envs with a runtime state: see :meth:`~torchrl_gorl.collectors.ResumableCollector.stagger_episodes`)."""
    return bool(cfg.collector.stagger_episodes) and not full_episode_batches(cfg) and has_runtime_state(cfg)


def train_env_device(cfg: DictConfig, device: torch.device) -> torch.device:
    """Where the env's tensors live: dm_control steps on the CPU; Playground on the run's device."""
    return device if cfg.env.backend == "playground" else torch.device("cpu")


def make_eval_env(cfg: DictConfig, task: str, device: torch.device) -> EnvBase:
    """``eval.num_envs`` envs of the training backend for the deterministic evaluations."""
    return env_maker(cfg, task, cfg.eval.num_envs, train_env_device(cfg, device))()


def make_ray_collector(cfg: DictConfig, create_env: Callable[[], EnvBase], policy, **common: Any):
    """``collector.num_workers`` Ray actors, each a collector stepping ``num_envs / num_workers`` envs, through
    TorchRL's ``Collector(..., backend="ray")`` (:class:`~torchrl.collectors.distributed.RayCollector`). Its sync
    mode stacks the workers' batches; :func:`collect` reshapes them to ``[num_envs, T]`` as the local ones.

    * Ray: started on this machine (``num_cpus = num_workers``, no dashboard, the workers' output kept in Ray's
      session logs, ``/tmp/ray/session_latest/logs``) unless this process already runs Ray or
      ``collector.ray_address`` names a cluster. TorchRL's runtime lease stops a Ray it started at
      ``collector.shutdown()``; after an error, Ray's exit hook does.
    * Weights: TorchRL's default ``RayWeightSyncScheme`` sends ``TensorDict.from_module(policy)``, buffers
      included, so every ``update_policy_weights_()`` carries the observation statistics with the parameters. It
      sends over torch.distributed (gloo) from this process: the workers must reach this machine over TCP.
    * Seeding: the workers are :class:`~torchrl_gorl.collectors.SeededCollector` on one torch thread each, so
      ``collector.set_seed(seed)`` seeds their envs (the local collector's seed chain: env ``i`` gets the same
      seed as in a local run) and their torch RNGs. A batch is then a function of the policy, the seed and
      ``num_workers`` (each worker draws its own noise, so the actions differ from a local run's).
    * ``total_frames=-1`` reads as zero frames in RayCollector (0.14.1): endless is ``sys.maxsize`` here.
    """
    import sys


    workers, address = cfg.collector.num_workers, cfg.collector.ray_address
    quiet = {"logging_level": "warning", "log_to_driver": False}  # actor reprs would flood the console
    # "local": a new instance even where RAY_ADDRESS is set; null ray_address means this machine
    ray_init = {"address": "local", "num_cpus": workers, "include_dashboard": False, **quiet}
    if address is not None:
        ray_init = {"address": address, **quiet}
    remote = {"num_cpus": 1}  # TorchRL's default also reserves 2 GiB of memory and a fifth of a GPU per actor
    if any(torch.device(common[key]).type == "cuda" for key in ("policy_device", "env_device", "storing_device")):
        remote["num_gpus"] = 1 / workers  # as the local workers, the actors use the run's GPU (untested: CPU box)
    options = {
        "collector_class": SeededCollector,
        "collector_kwargs": {"num_threads": 1, "stagger_episodes": stagger_episodes(cfg),
                             "auto_register_policy_transforms": common.pop("auto_register_policy_transforms"),
                             "compile_policy": common.pop("compile_policy")},  # compiled in the actor
        "ray_init_config": ray_init,
        "remote_configs": remote,
    }
    if common["total_frames"] < 0:
        common["total_frames"] = sys.maxsize
    try:
        collector = Collector(create_env, policy, backend="ray", num_collectors=workers, sync=True,
                              backend_options=options, **common)
    except ConnectionError as err:
        if address is None:
            raise
        raise ValueError(f"config key collector.ray_address = {address!r}: cannot connect ({err}). Is the cluster up "
                         "(ray status), and with Ray's token authentication, is RAY_AUTH_MODE=token set here "
                         "(docs/scaling.md)?") from err
    collector.update_policy_weights_()  # joins the weight-sync process group now, not at the first update
    return collector


def collect(collector, iterator, seed: int, device: torch.device, *, reseed_envs: bool = True) -> TensorDictBase:
    """Collects one batch as a function of ``seed`` alone: the envs are reseeded and the policy's
    sampling runs on a torch RNG seeded with ``seed`` (forked, so the training RNG is untouched).

    A freshly built collector consumes the RNG differently on its first batch; seeding each batch
    makes a resumed run see exactly the episodes of the uninterrupted one. Worker processes seed their own
    sampling from it too: TorchRL's multi-process collector does (``torch.manual_seed`` in each worker), and so do
    the Ray actors (:class:`~torchrl_gorl.collectors.SeededCollector`).
    ``reseed_envs=False`` (``collector.unroll_length`` set) leaves the running envs alone and seeds the sampling only.
    Returns ``[num_envs, T]``: the multi-worker collectors' ``[workers, envs per worker, T]`` is flattened.
    """
    if reseed_envs:
        collector.set_seed(seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        data = next(iterator)
    return data.reshape(-1, data.shape[-1]) if data.batch_dims > 2 else data


def batch_seed(base: int, stage: int, index: int, kind: int) -> int:
    """A reproducible seed per (run seed, stage, batch, purpose), hashed so that the seed chains of
    different batches (each env of a batch gets the next seed of the chain) do not overlap."""
    return int(np.random.SeedSequence([base, stage, index, kind]).generate_state(1)[0])


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


def train_episode_metrics(data: TensorDictBase) -> dict[str, float]:
    done = data.get(("next", "done")).squeeze(-1)
    if not done.any():
        return {}
    return {"train/episode_reward": data.get(("next", "episode_reward"))[done].mean().item()}


def eval_points(num_iterations: int, num_evals: int) -> set[int]:
    """Iterations evaluated before their update, spread as the reference (linspace)."""
    return {int(i) for i in np.linspace(0, num_iterations - 1, min(num_evals, num_iterations))}


# --------------------------------------------------------------------------- logging and outputs
class RunLogger:
    """TorchRL logger (csv / wandb / tensorboard) plus the small ``eval.csv`` the results tables read.

    ``eval.csv`` grows as the run goes: each evaluation row is appended (and synced) when it is made, so a killed
    run loses no finished row; a resumed run first rewrites the file with the rows its checkpoint holds (the rows
    after it are made again, identically) and appends from there, so the file never holds a row twice.
    """

    EVAL_FIELDS = ["stage", "iteration", "frames_encoder", "frames_decoder_data", "frames_total", "frames_eval",
                   "wall_time_train_s", "wall_time_eval_s",
                   "return_mean", "return_std", "return_min", "return_max", "num_episodes"]

    def __init__(self, cfg: DictConfig, algo: str, task: str) -> None:
        self.exp_name = generate_exp_name(algo, f"{cfg.logger.exp_name}_{task}")
        self.logger = None
        if cfg.logger.backend:
            kwargs = {}
            if cfg.logger.backend == "wandb":
                kwargs["wandb_kwargs"] = {
                    "config": OmegaConf.to_container(cfg, resolve=True),
                    "project": cfg.logger.project,
                    "group": cfg.logger.group,
                    "mode": cfg.logger.wandb_mode,
                }
            self.logger = get_logger(cfg.logger.backend, logger_name="logs", experiment_name=self.exp_name, **kwargs)
        self.out = pathlib.Path.cwd()
        self.eval_rows: list[dict[str, float]] = []
        self.started = False  # eval.csv is (re)written at the first row or at a successful resume, not before

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.logger is not None:
            self.logger.log_metrics(metrics, step)

    def restart(self, rows: list[dict[str, float]]) -> None:
        """``eval.csv`` as ``rows`` (a fresh run: the header alone), written atomically; later rows are appended."""
        self.eval_rows, self.started = rows, True
        lines = io.StringIO()
        writer = csv.DictWriter(lines, fieldnames=self.EVAL_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.out / "eval.csv", lines.getvalue())

    def log_eval(self, row: dict[str, float]) -> None:
        if not self.started:
            self.restart(self.eval_rows)
        self.eval_rows.append(row)
        with open(self.out / "eval.csv", "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.EVAL_FIELDS).writerow(row)
            f.flush()
            os.fsync(f.fileno())
        self.log({f"eval/{k}": row[k] for k in ("return_mean", "return_std", "return_min", "return_max")}, row["frames_total"])

    def plot(self, title: str, stage_starts: Sequence[int] = ()) -> None:
        """Redraws ``learning_curve.png`` from the rows so far (at each stage end and at the end of the run)."""
        plot_learning_curve(self.eval_rows, self.out / "learning_curve.png", title, stage_starts)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=2))


def plot_learning_curve(rows, path: pathlib.Path, title: str, stage_starts: Sequence[int] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if rows:
        x = np.array([r["frames_total"] for r in rows])
        y = np.array([r["return_mean"] for r in rows])
        s = np.array([r["return_std"] for r in rows])
        ax.plot(x, y, marker="o", ms=3)
        ax.fill_between(x, y - s, y + s, alpha=0.25)
    for start in stage_starts:
        ax.axvline(start, color="grey", ls=":", lw=1)
    ax.set_xlabel("env steps (encoder PPO + decoder data)")
    ax.set_ylabel("eval return (deterministic, 1000 steps)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, image.getvalue())


def resolve_gamma(cfg: DictConfig) -> float:
    return float(cfg.env.gamma) if cfg.env.gamma is not None else default_gamma(cfg.env.task)


#: config groups a resumed run may change: they do not change what is computed
RESUME_FREE = ("checkpoint", "logger", "device", "num_threads", "hydra")
#: settings that do not change what is computed (a restarted cluster has a new head address)
RESUME_FREE_KEYS = ("ppo.num_threads", "collector.ray_address")


def _flat(container: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(container, dict):
        out = {}
        for k, v in container.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: container}


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def check_resume_compatible(cfg: DictConfig, saved: dict[str, Any], obs_dim: int, act_dim: int) -> None:
    """A resumed run must be the same run: every setting but logging, checkpointing, device and threads must
    match the checkpoint's. Names the first key that does not."""
    if saved["dims"] != [obs_dim, act_dim]:
        raise ValueError(f"config key env.task: checkpoint dims {saved['dims']} != this task's {[obs_dim, act_dim]}.")
    now = _flat(OmegaConf.to_container(cfg, resolve=True))
    then = _flat(saved["config"])
    # staggering is compared where it acts: full-episode runs and envs without a runtime state never stagger
    for flat, config in ((now, cfg), (then, OmegaConf.create(_nested(then)))):
        with contextlib.suppress(ConfigAttributeError):  # a key it depends on is missing: compared as saved
            flat["collector.stagger_episodes"] = stagger_episodes(config)
    # staggering follows from other keys (unroll length, env backend): a difference there is named first
    for key in sorted(set(now) | set(then), key=lambda k: (k == "collector.stagger_episodes", k)):
        if key.split(".")[0] in RESUME_FREE or key in RESUME_FREE_KEYS:
            continue
        if now.get(key) != then.get(key):
            raise ValueError(f"config key {key} = {now.get(key)!r} does not match the resumed checkpoint's {then.get(key)!r}.")


#: a refit's entry in summary.json, in this order
REFIT_FIELDS = ("stage", "rows", "best_val_loss", "best_epoch", "epochs_run")


# --------------------------------------------------------------------------- the run: PPO stages, evaluation, checkpoints
class EncoderRun:
    """State and bookkeeping of one training run: env-step counters, the best encoder of the current
    stage, evaluation, logging and checkpoints. ``gorl_ppo.py`` and ``ppo_gaussian.py`` share it; the
    scripts keep the algorithm (what happens between stages)."""

    def __init__(self, cfg: DictConfig, *, algo: str, title: str, task: str, device: torch.device,
                 dims: tuple[int, int], policy, actor, critic, ppo: PPOUpdate, collector, eval_env,
                 decoder=None) -> None:
        self.cfg, self.title, self.task, self.device, self.dims = cfg, title, task, device, dims
        self.policy, self.actor, self.critic, self.decoder = policy, actor, critic, decoder
        self.ppo, self.collector, self.eval_env = ppo, collector, eval_env
        self.batches = iter(collector)
        self.seed = cfg.env.seed
        self.progress = {"stage": 0, "iteration": 0, "frames_encoder": 0, "frames_decoder_data": 0, "frames_eval": 0,
                         "best_return": -float("inf"), "eval_rows": [], "stage_starts": [0], "refits": [],
                         "wall_time": 0.0, "wall_time_eval": 0.0}
        self.best_encoder = None  # the stage's best actor and critic state dicts
        self.last_decoder = None  # a refit after the last stage: kept in checkpoints, never deployed
        rng = GlobalRNGState().state_dict()
        self.logger = RunLogger(cfg, algo, task)
        GlobalRNGState().load_state_dict(rng)  # logging backends (wandb) draw random numbers: results must not depend on them
        self.logger.eval_rows = self.progress["eval_rows"]  # one list: checkpoints carry the history
        self.start = RUN_STARTED or time.time()
        self.last_checkpoint = 0
        self.pbar = None
        # Ctrl-C: finish the iteration, checkpoint, exit 130 (collector workers ignore SIGINT: they are shut down)
        self.stop_requested, self.previous_sigint = False, None
        if threading.current_thread() is threading.main_thread():
            self.previous_sigint = signal.signal(signal.SIGINT, self._request_stop)

    # -- counters
    def total_frames(self) -> int:
        return self.progress["frames_encoder"] + self.progress["frames_decoder_data"]

    def add_frames(self, kind: str, n: int) -> None:
        self.progress[f"frames_{kind}"] += n
        if self.pbar is not None and kind != "eval":
            self.pbar.update(n)

    # -- checkpoints
    def checkpoint(self, name: str) -> pathlib.Path:
        """Saves the run as registered components of a ``torchrl.checkpoint`` archive (tensors, plain containers and
        JSON: see :func:`~torchrl_gorl.training.load_checkpoint`), at its env-step count, keeping the latest (every
        one with ``checkpoint.keep_all``; and the one after the best evaluation with ``checkpoint.keep_best``).

        A write that fails (no space left, a read-only disk) stops the run with the previous checkpoint intact.
        """
        self.progress["wall_time"] = time.time() - self.start
        components = {"config": OmegaConf.to_container(self.cfg, resolve=True), "dims": list(self.dims),
                      "progress": self.progress, "actor": self.actor, "critic": self.critic, "ppo": self.ppo,
                      "rng": GlobalRNGState()}
        optional = {"decoder": self.decoder, "best_encoder": self.best_encoder, "last_decoder": self.last_decoder,
                    # running envs (unroll mode): physics, task RNGs, carried observations, the workers' sampling RNGs
                    "collector": None if full_episode_batches(self.cfg) else self.collector}
        components.update({key: value for key, value in optional.items() if value is not None})
        best = self.progress["best_return"]  # of the stage's best encoder, which the checkpoint holds
        metadata = {"name": name, "stage": self.progress["stage"], "iteration": self.progress["iteration"],
                    "best_return": best if math.isfinite(best) else -1e30}
        # every env step so far, evaluation included: a checkpoint after an evaluation gets a file of its own
        step = self.total_frames() + self.progress["frames_eval"]
        try:
            return save_checkpoint(components, self.cfg.checkpoint.dir, step=step,
                                   keep_last=sys.maxsize if self.cfg.checkpoint.keep_all else 1, metadata=metadata,
                                   keep_best="best_return" if self.cfg.checkpoint.keep_best else None)
        except (OSError, RuntimeError) as error:  # torch.save reports a full disk as a RuntimeError
            reason = getattr(error, "strerror", None) or str(error)
            raise OSError(getattr(error, "errno", None), f"checkpoint {name!r} could not be written to "
                          f"{self.cfg.checkpoint.dir!r} ({reason}); the previous checkpoint there is intact: free "
                          "space or make it writable, then resume from it.") from None

    def restore(self, saved: dict[str, Any]) -> None:
        """Continues from a checkpoint of the same run (same settings, see :func:`check_resume_compatible`)."""
        try:
            check_resume_compatible(self.cfg, saved, *self.dims)
        except ValueError as error:
            raise ValueError(f"checkpoint {saved.get('path', '')!r}: {error}") from None
        self.actor.load_state_dict(saved["actor"])
        self.critic.load_state_dict(saved["critic"])
        if self.decoder is not None:
            self.decoder.load_state_dict(saved["decoder"])
        self.ppo.load_state_dict(saved["ppo"])
        self.progress = saved["progress"]
        self.best_encoder, self.last_decoder = saved.get("best_encoder"), saved.get("last_decoder")
        if not full_episode_batches(self.cfg):
            if saved.get("collector") is not None:
                self.collector.load_state_dict(saved["collector"])
            if saved.get("collector") is None or not has_runtime_state(self.cfg):
                why = ("the checkpoint has no collector state" if has_runtime_state(self.cfg)
                       else f"env.backend={self.cfg.env.backend} with collector.env_backend="
                            f"{self.cfg.collector.env_backend} has no runtime state to save")
                log.warning("collector.unroll_length is set but %s: the resumed run starts fresh episodes and does "
                            "not repeat the uninterrupted run exactly.", why)
        self.logger.restart(self.progress["eval_rows"])  # eval.csv as at the checkpoint: later rows come again
        self.start = time.time() - self.progress["wall_time"]
        self.last_checkpoint = self.progress["frames_encoder"]
        rng = dict(saved["rng"])
        if "torch_cuda" in rng and not torch.cuda.is_available():
            del rng["torch_cuda"]
            log.warning("the checkpoint holds CUDA random states but CUDA is not available here: the resumed run "
                        "does not repeat the uninterrupted run exactly.")
        GlobalRNGState().load_state_dict(rng)
        self.collector.update_policy_weights_()
        log.info("resumed at stage %d, iteration %d", self.progress["stage"], self.progress["iteration"])

    def _request_stop(self, signum: int, frame: Any) -> None:
        self.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once
        log.warning("Ctrl-C: the run stops with a checkpoint after the current iteration (Ctrl-C again: at once, "
                    "without one)")

    def stop_if_requested(self) -> None:
        """After Ctrl-C, at the end of an iteration or stage: a checkpoint, the command that resumes the run from it
        (into the same run directory, so eval.csv goes on), and exit status 130."""
        if not self.stop_requested:
            return
        path = self.checkpoint("interrupted")
        self.collector.shutdown()
        self.eval_env.close()
        keep = [a for a in sys.argv[1:] if not a.startswith(("checkpoint.resume=", "hydra.run.dir="))]
        command = shlex.join([sys.executable, sys.argv[0], *keep, f"hydra.run.dir={pathlib.Path.cwd()}",
                              f"checkpoint.resume={path.resolve()}"])
        print(f"Interrupted: checkpoint {path}. Resume with:\n  {command}", file=sys.stderr, flush=True)
        raise SystemExit(130)

    # -- collection
    def collect(self, seed: int) -> TensorDictBase:
        """The next ``[num_envs, T]`` batch (see :func:`collect`)."""
        return collect(self.collector, self.batches, seed, self.device, reseed_envs=full_episode_batches(self.cfg))

    # -- evaluation
    def evaluate(self, stage: int, iteration: int) -> dict[str, float]:
        """Deterministic evaluation; keeps the encoder if it is the stage's best (ties: the later one)."""
        cfg, progress = self.cfg, self.progress
        began = time.time()
        result = evaluate_policy(self.eval_env, self.policy, num_episodes=cfg.eval.num_episodes,
                                 seed=batch_seed(self.seed, stage, len(progress["eval_rows"]), kind=3))
        self.add_frames("eval", result["frames"])
        row = {"stage": stage, "iteration": iteration, "frames_encoder": progress["frames_encoder"],
               "frames_decoder_data": progress["frames_decoder_data"], "frames_total": self.total_frames(),
               "frames_eval": progress["frames_eval"], **self.wall_times(began),
               **{k: v for k, v in result.items() if k != "frames"}}
        progress["wall_time_eval"] += time.time() - began
        self.logger.log_eval(row)
        target = cfg.eval.target_return
        if target is not None and result["return_mean"] >= target:
            progress["target_reached"] = True
        if result["return_mean"] >= progress["best_return"] - 1e-6:
            progress["best_return"] = result["return_mean"]
            self.best_encoder = copy.deepcopy({"actor": self.actor.state_dict(), "critic": self.critic.state_dict()})
        log.info("stage %d iteration %d: eval return %.1f +- %.1f (env steps %d)",
                 stage, iteration, result["return_mean"], result["return_std"], self.total_frames())
        return result

    def wall_times(self, now: float) -> dict[str, float]:
        """Wall-clock seconds of the run up to ``now``: training (collection, updates, refits, checkpoints;
        resumed runs include the time before the checkpoint) and, apart, the evaluations before ``now``."""
        evaluating = self.progress["wall_time_eval"]
        return {"wall_time_train_s": round(now - self.start - evaluating, 3), "wall_time_eval_s": round(evaluating, 3)}

    def load_best_encoder(self) -> None:
        self.actor.load_state_dict(self.best_encoder["actor"])
        self.critic.load_state_dict(self.best_encoder["critic"])
        self.collector.update_policy_weights_()

    # -- one stage of PPO
    def start_stage(self, stage: int, hparams: dict[str, float], initial_encoder: dict[str, Any] | None) -> None:
        """Per-stage settings; on a fresh stage with ``initial_encoder``, that encoder and a new optimiser
        (the reference); without, the previous stage's best encoder goes on with the optimiser's state."""
        self.ppo.set_stage(hparams)
        if self.progress["iteration"] > 0:  # resumed mid-stage
            return
        if initial_encoder is not None or stage == 0:
            if initial_encoder is not None:
                self.actor.load_state_dict(initial_encoder["actor"])
                self.critic.load_state_dict(initial_encoder["critic"])
            self.ppo.reset_optimizer()
        self.progress["best_return"], self.best_encoder = -float("inf"), None
        self.collector.update_policy_weights_()

    def train_stage(self, stage: int, num_iterations: int, num_evals: int, hparams: dict[str, float]) -> None:
        """PPO iterations from where the run stands, evaluated at spread-out iterations and after the last."""
        cfg, progress = self.cfg, self.progress
        evals = eval_points(num_iterations, num_evals)
        for iteration in range(progress["iteration"], num_iterations):
            if iteration in evals:
                self.evaluate(stage, iteration)
                if self.target_reached:
                    return
            data = self.collect(batch_seed(self.seed, stage, iteration, kind=1))
            metrics = {**train_episode_metrics(data), **self.ppo.update(data)}
            # statistics move after the update, so stored log-probs always match the collecting policy
            if self.ppo.observation_norm is not None:
                self.ppo.observation_norm.update(data["observation"])
            self.collector.update_policy_weights_()
            self.add_frames("encoder", data.numel())
            progress["iteration"] = iteration + 1
            metrics.update({"stage": stage, "frames/encoder": progress["frames_encoder"],
                            "frames/decoder_data": progress["frames_decoder_data"],
                            "frames/eval": progress["frames_eval"], "frames/total": self.total_frames(),
                            "train/clip_epsilon": hparams["clip_epsilon"],
                            "time/fps": self.total_frames() / (time.time() - self.start)})
            self.logger.log(metrics, self.total_frames())
            interval = cfg.checkpoint.interval_frames
            if interval and progress["frames_encoder"] - self.last_checkpoint >= interval:
                self.last_checkpoint = progress["frames_encoder"]
                self.checkpoint(f"stage{stage}_iter{iteration + 1:05d}")
            self.stop_if_requested()
        self.evaluate(stage, num_iterations)  # the last update is evaluated too (the reference skips it)

    @property
    def target_reached(self) -> bool:
        """An evaluation reached ``eval.target_return``: the run ends there, with the encoder that reached it."""
        return self.progress.get("target_reached", False)

    def end_stage(self, stage: int, num_stages: int) -> None:
        self.progress["stage"], self.progress["iteration"] = stage + 1, 0
        if stage + 1 < num_stages:
            self.progress["stage_starts"].append(self.total_frames())
        self.checkpoint(f"stage{stage}_end")
        self.logger.plot(self.title, self.progress["stage_starts"][1:])
        self.stop_if_requested()

    def train_single_stage(self) -> None:
        """The baselines' schedule: one PPO stage with stage-0 settings for GoRL's whole env-step budget
        (encoder PPO + decoder data), evaluated as often as all GoRL stages together."""
        cfg = self.cfg
        num_iterations = total_interaction_frames(cfg) // frames_per_iteration(cfg)
        self.pbar = tqdm.tqdm(total=num_iterations * frames_per_iteration(cfg), initial=self.total_frames(),
                              disable=not cfg.logger.progress_bar)
        if self.progress["stage"] == 0:
            hparams = stage_hparams(cfg, 0)
            self.start_stage(0, hparams, None)
            self.train_stage(0, num_iterations, cfg.eval.num_evals * cfg.schedule.num_stages, hparams)
            self.load_best_encoder()
            self.end_stage(0, 1)

    # -- end of run
    def finish(self, **extra: Any) -> dict[str, Any]:
        """Evaluates the deployed policy on fresh episodes (the in-stage maximum that picked it is
        optimistically biased), writes summary.json and the final learning curve."""
        began = time.time()
        final = evaluate_policy(self.eval_env, self.policy, num_episodes=self.cfg.eval.num_episodes,
                                seed=batch_seed(self.seed, 99, 0, kind=5))
        self.progress["wall_time_eval"] += time.time() - began
        self.add_frames("eval", final["frames"])
        if self.pbar is not None:
            self.pbar.close()
        self.collector.shutdown()
        self.eval_env.close()
        if self.previous_sigint is not None:  # the process's handler again (a script may train more than one run)
            signal.signal(signal.SIGINT, self.previous_sigint)
        wall = time.time() - self.start
        p = self.progress
        summary = {
            **extra, "task": self.task, "seed": self.seed,
            "final_return": final["return_mean"], "final_return_std": final["return_std"],
            "best_eval_return": max(r["return_mean"] for r in self.logger.eval_rows),
            "frames_encoder": p["frames_encoder"], "frames_decoder_data": p["frames_decoder_data"],
            "frames_total": self.total_frames(), "frames_eval": p["frames_eval"],
            "wall_time_s": wall, **self.wall_times(self.start + wall), "fps": (self.total_frames() + p["frames_eval"]) / wall,
            "refits": [{key: refit[key] for key in REFIT_FIELDS} for refit in p["refits"]],
        }
        self.logger.write_summary(summary)
        self.logger.plot(self.title, p["stage_starts"][1:])
        log.info("done: final return %.1f (best eval %.1f), %d env steps in %.0f s",
                 summary["final_return"], summary["best_eval_return"], summary["frames_total"], wall)
        return summary
