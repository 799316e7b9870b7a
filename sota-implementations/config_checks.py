"""Config checks shared by the scripts: each reads one key and raises a ``ValueError`` naming the key and the bad
value, so that a bad config fails at start-up, before any env or model is built."""
from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from torchrl_gorl.envs import EPISODE_LENGTH, resolve_task
from torchrl_gorl.envs.dm_control import BACKENDS as ENV_BACKENDS
from torchrl_gorl.envs.playground import INSTALL_HINT, PLAYGROUND_IMPLS, playground_available
from torchrl_gorl.envs.tasks import resolve_playground_task
from torchrl_gorl.training.schedule import stage_value

DECODER_TYPES = ("flow", "diffusion")


def positive_int(cfg: DictConfig, key: str) -> int:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"config key {key} must be a positive integer, got {value!r}.")
    return value


def positive_float(cfg: DictConfig, key: str, *, allow_zero: bool = False) -> float:
    value = OmegaConf.select(cfg, key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"config key {key} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}.")
    return float(value)


def int_list(cfg: DictConfig, key: str) -> list[int]:
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, (ListConfig, list)) or len(value) == 0:
        raise ValueError(f"config key {key} must be a non-empty list, got {value!r}.")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"config key {key}[{i}] must be a positive integer, got {v!r}.")
    return list(value)


def choice(cfg: DictConfig, key: str, choices: Sequence[str]) -> str:
    value = OmegaConf.select(cfg, key)
    if value not in choices:
        raise ValueError(f"config key {key} must be one of {list(choices)}, got {value!r}.")
    return value


METHODS = ("gorl", "ppo_gaussian", "fpo", "dppo")


def validate_config(cfg: DictConfig, *, method: str = "gorl") -> None:
    """Fails at start-up, naming the key, on anything the run of ``method`` would otherwise trip over later.

    Every key's value is checked first, then what the valid config needs installed (:func:`check_installed`), so
    that a bad key is named the same way with or without the optional extras."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {list(METHODS)}.")
    playground = choice(cfg, "env.backend", ["dm_control", "playground"]) == "playground"
    try:
        resolve_playground_task(cfg.env.task) if playground else resolve_task(cfg.env.task)
    except ValueError as err:
        raise ValueError(f"config key env.task: {err}") from None
    if playground:
        choice(cfg, "env.playground_impl", list(PLAYGROUND_IMPLS))
    if cfg.env.gamma is not None and not 0 < cfg.env.gamma <= 1:
        raise ValueError(f"config key env.gamma must be in (0, 1], got {cfg.env.gamma!r}.")
    positive_float(cfg, "env.reward_scale")
    for key in ("collector.num_envs", "eval.num_episodes", "eval.num_envs", "eval.num_evals", "ppo.epochs",
                "ppo.num_minibatches", "schedule.num_stages", "schedule.decoder_data_iterations",
                "refit.batch_size", "refit.max_epochs", "refit.patience", "refit.num_noise_samples"):
        positive_int(cfg, key)
    workers = cfg.collector.num_workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"config key collector.num_workers must be a non-negative integer, got {workers!r}.")
    if workers and cfg.collector.num_envs % workers:
        raise ValueError(
            f"config key collector.num_envs = {cfg.collector.num_envs} must be a multiple of collector.num_workers = {workers}."
        )
    choice(cfg, "collector.env_backend", list(ENV_BACKENDS))
    backend, address = choice(cfg, "collector.backend", ["local", "ray"]), cfg.collector.ray_address
    if backend == "ray" and workers < 1:
        raise ValueError(f"config key collector.num_workers must be at least 1 with collector.backend=ray "
                         f"(one Ray actor per worker), got {workers}.")
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise ValueError(f'config key collector.ray_address must be null (start Ray here), "auto" or a cluster '
                         f'address such as "ray://head:10001", got {address!r}.')
    if address is not None and backend != "ray":
        raise ValueError(f"config key collector.ray_address = {address!r} is only used with collector.backend=ray.")
    threads = cfg.ppo.num_threads
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"config key ppo.num_threads must be a positive integer or null, got {threads!r}.")
    target = cfg.eval.target_return
    if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float))):
        raise ValueError(f"config key eval.target_return must be null or a number, got {target!r}.")
    if not isinstance(cfg.ppo.compile, bool):
        raise ValueError(f"config key ppo.compile must be true or false, got {cfg.ppo.compile!r}.")
    if not isinstance(cfg.ppo.compile_step, bool):
        raise ValueError(f"config key ppo.compile_step must be true or false, got {cfg.ppo.compile_step!r}.")
    if cfg.ppo.compile_step and method not in ("gorl", "ppo_gaussian"):
        raise ValueError(f"config key ppo.compile_step=true supports gorl_ppo.py and ppo_gaussian.py only, not {method}.")
    if cfg.ppo.compile or cfg.ppo.compile_step:
        check_compile_backend(cfg)
    if not isinstance(cfg.collector.compile_policy, bool):
        raise ValueError(f"config key collector.compile_policy must be true or false, got {cfg.collector.compile_policy!r}.")
    for key in ("ppo.lr", "refit.lr"):
        positive_float(cfg, key)
    for key in ("ppo.critic_coeff", "ppo.entropy_coeff"):
        positive_float(cfg, key, allow_zero=True)
    int_list(cfg, "encoder.num_cells")
    int_list(cfg, "encoder.critic_num_cells")
    choice(cfg, "encoder.init", ["scratch", "continue"])
    choice(cfg, "ppo.latent_prior", ["l2", "kl"])
    choice(cfg, "ppo.loss_critic_type", ["l1", "l2", "smooth_l1"])
    choice(cfg, "logger.backend", ["csv", "wandb", "tensorboard", "", None])
    choice(cfg, "logger.wandb_mode", ["online", "offline", "disabled"])
    choice(cfg, "device", ["auto", "cpu", "cuda"] + [f"cuda:{i}" for i in range(16)])
    if not isinstance(cfg.env.seed, int) or isinstance(cfg.env.seed, bool) or cfg.env.seed < 0:
        raise ValueError(f"config key env.seed must be a non-negative integer, got {cfg.env.seed!r}.")
    if not 0 <= cfg.ppo.gae_lambda <= 1:
        raise ValueError(f"config key ppo.gae_lambda must be in [0, 1], got {cfg.ppo.gae_lambda!r}.")
    interval = cfg.checkpoint.interval_frames
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 0:
        raise ValueError(f"config key checkpoint.interval_frames must be a non-negative integer, got {interval!r}.")
    for key in ("encoder.normalize_observations", "ppo.normalize_advantage", "schedule.refit_last_stage",
                "checkpoint.keep_all", "checkpoint.keep_best", "logger.progress_bar"):
        if not isinstance(OmegaConf.select(cfg, key), bool):
            raise ValueError(f"config key {key} must be true or false, got {OmegaConf.select(cfg, key)!r}.")
    if cfg.refit.max_samples is not None:
        positive_int(cfg, "refit.max_samples")
    if not 0 < cfg.refit.val_fraction < 1:
        raise ValueError(f"config key refit.val_fraction must be in (0, 1), got {cfg.refit.val_fraction!r}.")
    stages = cfg.schedule.num_stages
    frames = int_list(cfg, "schedule.stage_frames")
    if len(frames) != stages:
        raise ValueError(
            f"config key schedule.stage_frames has {len(frames)} entries but schedule.num_stages is {stages}."
        )
    unroll = cfg.collector.unroll_length
    if not isinstance(cfg.collector.get("stagger_episodes", True), bool):
        raise ValueError(f"config key collector.stagger_episodes must be true or false, got "
                         f"{cfg.collector.stagger_episodes!r}.")
    if unroll is not None and (isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1):
        raise ValueError(f"config key collector.unroll_length must be null (full episodes) or a positive integer, "
                         f"got {unroll!r}.")
    per_iteration = cfg.collector.num_envs * (unroll or EPISODE_LENGTH)
    for i, f in enumerate(frames):
        if f < per_iteration:
            raise ValueError(
                f"config key schedule.stage_frames[{i}] = {f} is less than one PPO iteration "
                f"(collector.num_envs x {unroll or EPISODE_LENGTH} = {per_iteration} env steps)."
            )
        if unroll is not None and f % per_iteration:
            raise ValueError(
                f"config key collector.unroll_length = {unroll}: one PPO iteration (collector.num_envs x "
                f"unroll_length = {per_iteration} env steps) does not divide schedule.stage_frames[{i}] = {f}."
            )
    if per_iteration % cfg.ppo.num_minibatches:
        raise ValueError(
            f"config key ppo.num_minibatches = {cfg.ppo.num_minibatches} does not divide the {per_iteration} "
            "env steps of one PPO iteration."
        )
    for key in ("schedule.clip_epsilon", "schedule.max_grad_norm", "schedule.latent_prior_coeff"):
        table = OmegaConf.select(cfg, key)
        if not isinstance(table, (ListConfig, list)) or len(table) == 0:
            raise ValueError(f"config key {key} must be a non-empty list (one entry per stage; the last repeats).")
        if len(table) > stages:
            raise ValueError(f"config key {key} has {len(table)} entries for {stages} stages.")
        for i, v in enumerate(table):
            bad = isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0
            bad = bad or (key != "schedule.latent_prior_coeff" and v == 0)
            bad = bad or (key == "schedule.clip_epsilon" and v >= 1)  # log1p(-eps) would be NaN
            if bad:
                raise ValueError(f"config key {key}[{i}] is out of range: {v!r}.")
    if method in ("fpo", "dppo"):
        validate_flow_policy_config(cfg, method)
    if method == "gorl":
        choice(cfg, "decoder.type", list(DECODER_TYPES))
        int_list(cfg, "decoder.num_cells")
        positive_int(cfg, "decoder.num_steps")
        positive_int(cfg, "decoder.num_diffusion_steps")
        if cfg.decoder.num_diffusion_steps < 2:
            raise ValueError(f"config key decoder.num_diffusion_steps must be at least 2, got {cfg.decoder.num_diffusion_steps}.")
        choice(cfg, "schedule.decoder_init", ["scratch", "finetune"])
        choice(cfg, "schedule.decoder_refit", ["plain", "weighted"])
        if not isinstance(cfg.schedule.save_decoder_data, bool):
            raise ValueError(f"config key schedule.save_decoder_data must be true or false, got {cfg.schedule.save_decoder_data!r}.")
        positive_float(cfg, "refit.gmpo_beta")
        positive_float(cfg, "refit.gmpo_max_weight")
    check_installed(cfg)


def check_installed(cfg: DictConfig) -> None:
    """What a config whose keys :func:`validate_config` has checked needs installed: the optional extras its
    backends use, and a C++ compiler for inductor on CPU. Each error names the key and how to get it."""
    if cfg.env.backend == "playground":
        if not playground_available():
            raise ValueError(f"config key env.backend=playground needs MuJoCo Playground: {INSTALL_HINT}.")
        if cfg.env.playground_impl == "warp" and importlib.util.find_spec("warp") is None:
            raise ValueError(f"config key env.playground_impl=warp needs MuJoCo Warp (warp-lang): {INSTALL_HINT}, "
                             "or env.playground_impl=jax (MJX).")
    if cfg.collector.backend == "ray" and importlib.util.find_spec("ray") is None:
        raise ValueError('config key collector.backend=ray needs the ray package: pip install -e ".[distributed]".')
    if cfg.logger.backend == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise ValueError('config key logger.backend=tensorboard needs the tensorboard package: pip install -e ".[tensorboard]".')
    for key in ("ppo.compile", "ppo.compile_step"):
        if OmegaConf.select(cfg, key) and cfg.ppo.compile_backend == "inductor":
            check_cpp_compiler(cfg, key)
    if cfg.collector.compile_policy:
        check_cpp_compiler(cfg, "collector.compile_policy")


def check_compile_backend(cfg: DictConfig) -> None:
    """``ppo.compile_backend`` is a torch.compile backend (inductor on CPU also needs a C++ compiler:
    :func:`check_installed`)."""
    import torch._dynamo

    backend = cfg.ppo.compile_backend
    if backend not in torch._dynamo.list_backends(exclude_tags=()):
        raise ValueError(f"config key ppo.compile_backend = {backend!r} is not a torch.compile backend; one of "
                         f"{torch._dynamo.list_backends()}.")


def check_cpp_compiler(cfg: DictConfig, key: str) -> None:
    """Inductor on CPU (the switch ``key`` compiles with it) writes C++ and needs a compiler on ``PATH``."""
    if str(cfg.device).startswith("cuda"):
        return
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        compiler = get_cpp_compiler()
    except Exception as err:  # noqa: BLE001 - torch names what it looked for
        compiler, reason = None, str(err)
    else:
        reason = f"{compiler!r} is not on PATH"
    if compiler is None or shutil.which(compiler) is None:
        raise ValueError(f"config key {key}=true: inductor on CPU needs a C++ compiler ({reason}); install "
                         f"one (e.g. g++), or set {key}=false.")


def validate_flow_policy_config(cfg: DictConfig, method: str) -> None:
    """The ``policy`` group and the ``fpo`` / ``dppo`` group of the direct flow-policy baselines."""
    int_list(cfg, "policy.num_cells")
    positive_int(cfg, "policy.num_steps")
    positive_float(cfg, "policy.output_scale")
    if method == "fpo":
        positive_int(cfg, "fpo.num_mc_samples")
        choice(cfg, "fpo.ratio", ["per_sample", "mean"])
        positive_float(cfg, "fpo.log_ratio_clip")
        choice(cfg, "fpo.t_sampling", ["grid", "uniform"])
        choice(cfg, "fpo.cfm_weighting", ["eps", "velocity"])
        return
    sigma = OmegaConf.select(cfg, "dppo.sde_sigma")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ValueError(f"config key dppo.sde_sigma must be positive (the denoising steps need noise), got {sigma!r}.")
    positive_float(cfg, "dppo.log_prob_min_std", allow_zero=True)
    if cfg.dppo.noise_clip is not None:
        positive_float(cfg, "dppo.noise_clip")
    if cfg.dppo.num_finetune_steps is not None:
        steps = positive_int(cfg, "dppo.num_finetune_steps")
        if steps > cfg.policy.num_steps:
            raise ValueError(f"config key dppo.num_finetune_steps = {steps} exceeds policy.num_steps = {cfg.policy.num_steps}.")
    choice(cfg, "dppo.aggregate", ["sum", "mean"])
    clamp = cfg.dppo.log_prob_clamp
    if clamp is not None and not (isinstance(clamp, (ListConfig, list)) and len(clamp) == 2 and clamp[0] < clamp[1]):
        raise ValueError(f"config key dppo.log_prob_clamp must be null or [low, high] with low < high, got {clamp!r}.")
    discount = cfg.dppo.denoising_discount
    if isinstance(discount, bool) or not isinstance(discount, (int, float)) or not 0 < discount <= 1:
        raise ValueError(f"config key dppo.denoising_discount must be in (0, 1], got {discount!r}.")
    base = cfg.dppo.clip_epsilon_base
    final = stage_value(cfg.schedule.clip_epsilon, 0)
    if base is not None and (isinstance(base, bool) or not isinstance(base, (int, float)) or not 0 < base <= final):
        raise ValueError(f"config key dppo.clip_epsilon_base must be null or in (0, schedule.clip_epsilon = {final}], "
                         f"got {base!r}: the clip range grows along the chain.")


