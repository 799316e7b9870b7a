"""What the scripts (gorl_ppo.py, ppo_gaussian.py, fpo.py, dppo.py) share: the config turned into objects (envs,
models, losses, the collector, the PPO update, the run that evaluates, logs and checkpoints the loop the scripts write
out) and the baselines' one-stage loop. The machinery is in the library (:mod:`torchrl_gorl.training`,
:mod:`torchrl_gorl.collectors`, :mod:`torchrl_gorl.config_readers`)."""
from __future__ import annotations

import functools
import logging
import pathlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf
from tensordict.nn import TensorDictModuleBase
from torchrl.checkpoint import GlobalRNGState
from torchrl.envs import EnvBase
from torchrl.objectives import LossModule

from torchrl_gorl import (
    DiffusionDecoderModule,
    DiffusionLoss,
    FlowDecoderModule,
    FlowMatchingLoss,
    FlowPolicy,
    GMPOLoss,
    LatentPriorLoss,
    make_latent_actor,
    make_latent_ppo_loss,
    make_value_network,
    ObservationNormalizer,
)
from torchrl_gorl import collectors
from torchrl_gorl.config_readers import (
    check_resume_compatible,
    frames_per_iteration,
    full_episode_batches,
    make_schedule,
    resolve_gamma,
    resume_caveat,
    stage_hparams,
    stagger_episodes,
)
from torchrl_gorl.configs import validate_config
from torchrl_gorl.envs import make_env, make_single_env, task_id
from torchrl_gorl.training import (
    batch_seed,
    eval_points,
    PPOUpdate,
    prepare_run_outputs,
    RunLogger,
    stage_value,
    TrainingRun,
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
    resume = to_absolute_path(cfg.checkpoint.resume) if cfg.checkpoint.resume else None  # from where it ran
    # the same run? Checked with the outputs, before any env, worker or model is built
    saved = prepare_run_outputs(pathlib.Path.cwd(), cfg.checkpoint.dir, resume,
                                check=lambda checkpoint: check_resume_compatible(cfg, checkpoint.get("config") or {}))
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


def make_flow_policy(cfg: DictConfig, obs_dim: int, act_dim: int, device, **sampling: Any):
    """A direct baseline's :class:`~torchrl_gorl.FlowPolicy` (``sampling``: its ``record`` mode and options) and a
    critic sharing its observation normaliser (as the reference)."""
    flow = FlowDecoderModule(obs_dim, act_dim, num_cells=tuple(cfg.policy.num_cells), num_steps=cfg.policy.num_steps,
                             output_scale=cfg.policy.output_scale, device=device)
    policy = FlowPolicy(flow, **sampling)
    critic = make_value_network(obs_dim, num_cells=tuple(cfg.encoder.critic_num_cells),
                                observation_norm=flow.observation_norm, device=device)
    # without normalisation the statistics stay at loc 0, scale 1: the normaliser is the identity
    return policy, critic, flow.observation_norm if cfg.encoder.normalize_observations else None


def clip_loss_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The ``ppo`` section's ``ClipPPOLoss`` arguments, with the clip range of ``schedule.clip_epsilon`` as the
    other methods (FPOLoss, DPPOLoss)."""
    return dict(clip_epsilon=stage_value(cfg.schedule.clip_epsilon, 0), critic_coeff=cfg.ppo.critic_coeff,
                loss_critic_type=cfg.ppo.loss_critic_type, normalize_advantage=cfg.ppo.normalize_advantage)


def make_decoder_loss(cfg: DictConfig, decoder):
    """The refit objective: the decoder's generative loss, GMPO-weighted with ``schedule.decoder_refit=weighted``."""
    if cfg.schedule.decoder_refit == "weighted":
        return GMPOLoss(decoder, beta=cfg.refit.gmpo_beta, max_weight=cfg.refit.gmpo_max_weight,
                        num_noise_samples=cfg.refit.num_noise_samples)
    _, loss_cls = DECODERS[cfg.decoder.type]
    return loss_cls(decoder, num_noise_samples=cfg.refit.num_noise_samples)


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


# --------------------------------------------------------------------------- the run: evaluation, logs, checkpoints
def make_run(cfg: DictConfig, *, algo: str, title: str, task: str, device: torch.device, dims: tuple[int, int],
             saved: dict[str, Any] | None, **modules: Any) -> TrainingRun:
    """The run's :class:`~torchrl_gorl.training.TrainingRun` (``modules``: policy, actor, critic, ppo, collector,
    eval_env and GoRL's decoder) from the ``eval``, ``checkpoint`` and ``logger`` sections; resumed from ``saved``
    (whose config :func:`setup` checked) if its env sizes are this run's."""
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
    if saved.get("dims") != list(dims):  # its config is this run's (setup): the env itself changed
        raise ValueError(f"checkpoint {saved['path']!r}: config key env.task: checkpoint dims {saved.get('dims')} "
                         f"!= this task's {list(dims)}.")
    if why := resume_caveat(cfg, saved):
        log.warning(why)
    run.restore(saved)
    return run


def make_baseline_run(cfg: DictConfig, *, algo: str, title: str, task: str, device: torch.device, gamma: float,
                      saved: dict[str, Any] | None, dims: tuple[int, int], policy: TensorDictModuleBase,
                      critic: TensorDictModuleBase, observation_norm: ObservationNormalizer | None,
                      loss: Callable[[TensorDictModuleBase, TensorDictModuleBase], LossModule] | None = None,
                      ) -> TrainingRun:
    """The baselines' run (ppo_gaussian.py, fpo.py, dppo.py) around their policy, as gorl_ppo.py builds its own: the
    collector, the evaluation envs, the PPO update on ``loss(policy, critic)`` (by default the latent PPO loss, see
    :func:`make_ppo_update`) and :func:`make_run`, fresh or resumed."""
    collector = make_collector(cfg, task, policy, device)
    eval_env = make_eval_env(cfg, task, device)
    ppo = make_ppo_update(cfg, policy, critic, gamma, device, observation_norm,
                          loss=None if loss is None else loss(policy, critic))
    return make_run(cfg, algo=algo, title=title, task=task, device=device, dims=dims, saved=saved, policy=policy,
                    actor=policy, critic=critic, ppo=ppo, collector=collector, eval_env=eval_env)


def train_single_stage(run: TrainingRun, cfg: DictConfig) -> None:
    """The baselines' loop: one PPO stage with stage-0 settings for GoRL's whole env-step budget (encoder PPO plus
    decoder data), evaluated as often as GoRL's stages together; gorl_ppo.py's encoder stage."""
    schedule = make_schedule(cfg).single_stage()
    run.progress_bar(schedule.total_frames, cfg.logger.progress_bar)
    if run.state.stage > 0:  # resumed after the stage: only the final evaluation is left
        return
    hparams = stage_hparams(cfg, 0)
    run.start_stage(0, hparams)
    num_iterations = schedule.iterations[0]
    evals = eval_points(num_iterations, cfg.eval.num_evals * cfg.schedule.num_stages)
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
