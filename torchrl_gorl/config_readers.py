"""What a script config (:mod:`torchrl_gorl.configs`) means beyond its values: the quantities derived from several
keys (env steps per iteration, the stage schedule, a task's discount, whether batches run on across iterations) and
whether a checkpoint's config is this run's (:func:`check_resume_compatible`) and whether resuming it repeats the run
(:func:`resume_caveat`).

>>> from omegaconf import OmegaConf
>>> cfg = OmegaConf.create({"collector": {"num_envs": 32, "unroll_length": 250}})
>>> frames_per_iteration(cfg), full_episode_batches(cfg)
(8000, False)
"""
from __future__ import annotations

import contextlib
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError

from torchrl_gorl.configs import check_config_version
from torchrl_gorl.envs import default_gamma, EPISODE_LENGTH, resolve_task
from torchrl_gorl.training.schedule import StageSchedule

__all__ = [
    "RESUME_FREE",
    "RESUME_FREE_KEYS",
    "check_resume_compatible",
    "frames_per_iteration",
    "full_episode_batches",
    "has_runtime_state",
    "make_schedule",
    "resolve_gamma",
    "resume_caveat",
    "stage_hparams",
    "stagger_episodes",
]

#: config groups a resumed run may change: they do not change what is computed
RESUME_FREE = ("checkpoint", "logger", "device", "num_threads", "hydra")
#: settings that do not change what is computed (a restarted cluster has a new head address)
RESUME_FREE_KEYS = ("ppo.num_threads", "collector.ray_address")


def full_episode_batches(cfg: DictConfig) -> bool:
    """Whether every batch resets and reseeds all envs (``collector.unroll_length: null``), which makes each batch
    a function of its seed; otherwise the envs run on across batches (TorchRL's collector semantics)."""
    return cfg.collector.unroll_length is None


def frames_per_iteration(cfg: DictConfig) -> int:
    """``collector.num_envs x unroll_length`` env steps per PPO iteration (a full episode, 1000, when null)."""
    return cfg.collector.num_envs * (cfg.collector.unroll_length or EPISODE_LENGTH)


def has_runtime_state(cfg: DictConfig) -> bool:
    """Whether the training envs expose their running state (:class:`~torchrl_gorl.envs.BatchedDMControlEnv`:
    physics, task RNG, the time limit's counter), which exact resume and staggering in unroll mode need; TorchRL's
    ``DMControlEnv`` and the Playground envs do not."""
    return cfg.env.backend == "dm_control" and cfg.collector.env_backend == "batched"


def stagger_episodes(cfg: DictConfig) -> bool:
    """Whether envs that run on get their first episodes cut short by random amounts (``collector.stagger_episodes``,
    unroll mode, envs with a runtime state: see :meth:`~torchrl_gorl.collectors.ResumableCollector.stagger_episodes`)."""
    return bool(cfg.collector.stagger_episodes) and not full_episode_batches(cfg) and has_runtime_state(cfg)


def make_schedule(cfg: DictConfig) -> StageSchedule:
    """The ``schedule`` section as a :class:`~torchrl_gorl.training.StageSchedule`."""
    s = cfg.schedule
    return StageSchedule(list(s.stage_frames)[:s.num_stages], frames_per_iteration(cfg), s.decoder_data_iterations,
                         s.refit_last_stage, clip_epsilon=list(s.clip_epsilon), max_grad_norm=list(s.max_grad_norm),
                         latent_prior_coeff=list(s.latent_prior_coeff))


def stage_hparams(cfg: DictConfig, stage: int) -> dict[str, float]:
    """The stage's PPO settings; ball_in_cup's stage 0 has no latent regulariser, as the reference."""
    hparams = make_schedule(cfg).hparams(stage)
    if stage == 0 and resolve_task(cfg.env.task) == ("ball_in_cup", "catch"):
        hparams["latent_prior_coeff"] = 0.0
    return hparams


def resolve_gamma(cfg: DictConfig) -> float:
    """``env.gamma``, or the task's discount from the reference's table when null."""
    return float(cfg.env.gamma) if cfg.env.gamma is not None else default_gamma(cfg.env.task)


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


def check_resume_compatible(cfg: DictConfig, saved_config: dict[str, Any]) -> None:
    """A resumed run must be the same run: every setting but logging, checkpointing, device and threads
    (:data:`RESUME_FREE`, :data:`RESUME_FREE_KEYS`) must match the checkpoint's config. Raises ``ValueError`` naming
    the first key that does not; a config of another format (:func:`~torchrl_gorl.configs.check_config_version`) is
    refused first."""
    check_config_version(saved_config)
    now = _flat(OmegaConf.to_container(cfg, resolve=True))
    then = _flat(saved_config)
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


def resume_caveat(cfg: DictConfig, saved: dict[str, Any]) -> str | None:
    """Why resuming ``saved`` (a loaded checkpoint of this config) cannot repeat the uninterrupted run exactly, or
    None if it can: batches that run on across iterations need the envs' state, which some checkpoints lack and some
    env paths do not expose (:func:`has_runtime_state`)."""
    if full_episode_batches(cfg) or (saved.get("collector") is not None and has_runtime_state(cfg)):
        return None
    why = ("the checkpoint has no collector state" if has_runtime_state(cfg)
           else f"env.backend={cfg.env.backend} with collector.env_backend={cfg.collector.env_backend} has no "
                "runtime state to save")
    return (f"collector.unroll_length is set but {why}: the resumed run starts fresh episodes and does not repeat "
            "the uninterrupted run exactly.")
