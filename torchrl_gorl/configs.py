"""Typed configs of the scripts in ``sota-implementations/``, as Hydra structured configs.

Each config group of the YAML files in ``sota-implementations/config/`` is a dataclass here; the YAML files hold the
values and name their schema first in their defaults list (``gorl_ppo_schema``, ``fpo_schema``, ``dppo_schema``,
``gmpo_schema``, ``gmpg_schema``, stored in Hydra's ``ConfigStore`` when this module is imported). Hydra then checks
every value's type and every choice while it composes, and names the key of a bad one (``full_key: ppo.lr``).

What a type cannot say fails in :func:`validate_config`, before any env or model is built, naming the key: the
ranges declared per field (``_value(gt=0)``), and the rules that tie keys together (budgets that must divide, table
lengths, packages and a C++ compiler present).

Checkpoints carry the config they ran with; :func:`check_config_version` refuses one written in another format
(:data:`CONFIG_VERSION`) before any key is compared.

>>> from omegaconf import OmegaConf, ValidationError
>>> cfg = OmegaConf.structured(GoRLConfig)
>>> try:
...     cfg.ppo.lr = "fast"
... except ValidationError as error:
...     print(error.full_key)
ppo.lr
>>> try:
...     cfg.decoder.type = "gan"
... except ValidationError as error:
...     print(error.full_key, "|", str(error).splitlines()[0])
decoder.type | Invalid value 'gan', expected one of [flow, diffusion]
"""
from __future__ import annotations

import dataclasses
import enum
import importlib.util
import shutil
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, MISSING, OmegaConf

from torchrl_gorl.envs import EPISODE_LENGTH, PLAYGROUND_IMPLS, playground_available, resolve_playground_task, resolve_task
from torchrl_gorl.envs.dm_control import BACKENDS as ENV_BACKENDS
from torchrl_gorl.envs.playground import INSTALL_HINT

__all__ = [
    "CONFIG_VERSION",
    "DPPOConfig",
    "FPOConfig",
    "GMPGConfig",
    "GMPOConfig",
    "GoRLConfig",
    "METHODS",
    "check_config_version",
    "check_installed",
    "register_configs",
    "validate_config",
]

#: the format of the configs below; a checkpoint's config of another format is not resumed (:func:`check_config_version`)
CONFIG_VERSION = 2


# --------------------------------------------------------------------------- choices and ranges
class _ChoiceType(enum.EnumMeta):
    def __getitem__(cls, name: str) -> Any:
        # OmegaConf looks a choice up by name; a choice whose value is no name ("" for no logger) by its value
        try:
            return super().__getitem__(name)
        except KeyError:
            return cls(name)


class Choice(str, enum.Enum, metaclass=_ChoiceType):
    """A config choice: its members compare, print, hash and serialise (JSON, checkpoints) as their string."""

    __str__ = str.__str__
    __format__ = str.__format__
    __repr__ = str.__repr__


def _choices(name: str, *values: str) -> Any:
    """The :class:`Choice` ``name`` of ``values`` (each its own member name; ``""`` is the member ``none``)."""
    return Choice(name, [(value or "none", value) for value in values], module=__name__, qualname=name)


EnvBackend = _choices("EnvBackend", "dm_control", "playground")
PlaygroundImpl = _choices("PlaygroundImpl", *PLAYGROUND_IMPLS)
EncoderInit = _choices("EncoderInit", "scratch", "continue")
DecoderType = _choices("DecoderType", "flow", "diffusion")
CriticLoss = _choices("CriticLoss", "l1", "l2", "smooth_l1")
LatentPrior = _choices("LatentPrior", "l2", "kl")
DecoderInit = _choices("DecoderInit", "scratch", "finetune")
DecoderRefit = _choices("DecoderRefit", "plain", "weighted")
EnvStepping = _choices("EnvStepping", *ENV_BACKENDS)
CollectorBackend = _choices("CollectorBackend", "local", "ray")
LoggerBackend = _choices("LoggerBackend", "csv", "wandb", "tensorboard", "")
WandbMode = _choices("WandbMode", "online", "offline", "disabled")
FPORatio = _choices("FPORatio", "per_sample", "mean")
TSampling = _choices("TSampling", "grid", "uniform")
CFMWeighting = _choices("CFMWeighting", "eps", "velocity")
Aggregate = _choices("Aggregate", "sum", "mean")
Divergence = _choices("Divergence", "exact", "hutchinson")

#: ``device``: auto (CUDA when present), the CPU or a CUDA device
DEVICES = ("auto", "cpu", "cuda", *(f"cuda:{i}" for i in range(16)))


def _value(*, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None) -> Any:
    """A field (no default: its value is in the YAML) whose value, or each entry of its non-empty list, must lie in
    the range these bounds give; :func:`validate_config` checks it."""
    bounds = {name: bound for name, bound in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if bound is not None}
    return field(default=MISSING, metadata={"bounds": bounds})


def _group(cls: type) -> Any:
    return field(default_factory=cls)


def _describe(bounds: Mapping[str, float], integer: bool) -> str:
    """``{"ge": 1}`` -> "a positive integer", ``{"gt": 0, "le": 1}`` -> "in (0, 1]"."""
    low, high = bounds.get("ge", bounds.get("gt")), bounds.get("le", bounds.get("lt"))
    if high is None:
        if bounds == ({"ge": 1} if integer else {"gt": 0}):
            return f"a positive {'integer' if integer else 'number'}"
        if bounds == {"ge": 0}:
            return f"a non-negative {'integer' if integer else 'number'}"
        return f"at least {low}" if "ge" in bounds else f"greater than {low}"
    return f"in {'[' if 'ge' in bounds else '('}{low}, {high}{']' if 'le' in bounds else ')'}"


def _in_bounds(value: Any, bounds: Mapping[str, float]) -> bool:
    return all((value >= b if name == "ge" else value > b if name == "gt" else value <= b if name == "le" else value < b)
               for name, b in bounds.items())


# --------------------------------------------------------------------------- online scripts: gorl_ppo, ppo_gaussian, fpo, dppo
@dataclass
class EnvConfig:
    """The task and how its envs are built."""

    task: str = MISSING  #: dm_control "domain-task" or the paper's name (CheetahRun, FingerSpin, ...)
    gamma: Optional[float] = _value(gt=0, le=1)  #: discount; null: the reference's per-task value
    reward_scale: float = _value(gt=0)  #: factor on training rewards (evaluation returns are raw)
    seed: int = _value(ge=0)  #: seed of torch, the envs and every batch
    backend: EnvBackend = MISSING  #: dm_control | playground (the paper's MuJoCo Playground ports)
    playground_impl: PlaygroundImpl = MISSING  #: playground physics: auto (warp on CUDA, jax on CPU) | warp | jax


@dataclass
class EncoderConfig:
    """The latent policy pi(z | s) and the critic that PPO trains."""

    num_cells: List[int] = _value(ge=1)  #: hidden layer sizes of the latent actor
    critic_num_cells: List[int] = _value(ge=1)  #: hidden layer sizes of the critic
    normalize_observations: bool = MISSING  #: running observation normalisation in front of both
    init: EncoderInit = MISSING  #: each stage's encoder: scratch (rebuilt from the seed) | continue


@dataclass
class DecoderConfig:
    """The generative decoder a = g(s, z), refit between stages."""

    type: DecoderType = MISSING  #: flow (flow matching) | diffusion (DDPM, DDIM sampling)
    num_cells: List[int] = _value(ge=1)  #: hidden layer sizes of its network
    num_steps: int = _value(ge=1)  #: flow: Euler steps from the latent to the action
    num_diffusion_steps: int = _value(ge=2)  #: diffusion: T (T - 1 DDIM steps)


@dataclass
class PPOConfig:
    """The PPO update of every iteration."""

    lr: float = _value(gt=0)  #: Adam learning rate
    epochs: int = _value(ge=1)  #: passes over each batch
    num_minibatches: int = _value(ge=1)  #: minibatches per pass (they must divide the batch)
    gae_lambda: float = _value(ge=0, le=1)  #: GAE lambda
    critic_coeff: float = _value(ge=0)  #: weight of the critic loss
    entropy_coeff: float = _value(ge=0)  #: weight of the entropy bonus
    loss_critic_type: CriticLoss = MISSING  #: l1 | l2 | smooth_l1
    normalize_advantage: bool = MISSING  #: standardise the advantages of each minibatch
    latent_prior: LatentPrior = MISSING  #: l2: c (mean mu^2 + mean sigma^2), the reference's | kl: KL to N(0, I)
    num_threads: Optional[int] = _value(ge=1)  #: torch threads during the update; null: as during collection
    compile: bool = MISSING  #: torch.compile the minibatch losses
    compile_backend: str = MISSING  #: the torch.compile backend (inductor on CPU needs a C++ compiler)
    compile_step: bool = MISSING  #: the whole minibatch step as one compiled graph (latent PPO loss only)


@dataclass
class ScheduleConfig:
    """Stages: PPO with a frozen decoder, then decoder data and a refit; per-stage tables repeat their last entry."""

    num_stages: int = _value(ge=1)  #: number of stages
    stage_frames: List[int] = _value(ge=1)  #: encoder PPO env steps of each stage
    clip_epsilon: List[float] = _value(gt=0, lt=1)  #: PPO clip range per stage
    max_grad_norm: List[float] = _value(gt=0)  #: gradient-norm clip per stage (.inf: none)
    latent_prior_coeff: List[float] = _value(ge=0)  #: weight of the latent prior loss per stage
    decoder_data_iterations: int = _value(ge=1)  #: decoder data per refit, in PPO iterations' worth of env steps
    decoder_init: DecoderInit = MISSING  #: each refit: scratch (a fresh decoder) | finetune (the previous one)
    refit_last_stage: bool = MISSING  #: also refit after the last stage (the reference does; nothing uses it)
    decoder_refit: DecoderRefit = MISSING  #: plain: behaviour cloning | weighted: GMPO weights from the advantages
    save_decoder_data: bool = MISSING  #: save each stage's decoder data as a replay buffer (datasets/stage<k>/)


@dataclass
class RefitConfig:
    """Fitting the decoder to the latest stage's (observation, latent, action) data."""

    batch_size: int = _value(ge=1)  #: minibatch size
    lr: float = _value(gt=0)  #: Adam learning rate
    max_epochs: int = _value(ge=1)  #: epochs at most
    patience: int = _value(ge=1)  #: stop after this many epochs without a better validation loss
    val_fraction: float = _value(gt=0, lt=1)  #: share of the data held out for validation
    max_samples: Optional[int] = _value(ge=1)  #: rows kept at most (the latest); null: all
    action_clip: Optional[float] = _value(gt=0)  #: fit to the pre-tanh actions clamped to +-this; null: as collected
    num_noise_samples: int = _value(ge=1)  #: noise draws per row in the generative loss
    gmpo_beta: float = _value(gt=0)  #: weighted refits: beta on the standardised advantages
    gmpo_max_weight: float = _value(gt=0)  #: weighted refits: the largest weight


@dataclass
class CollectorConfig:
    """How the envs are stepped for PPO."""

    num_envs: int = _value(ge=1)  #: envs stepped together
    unroll_length: Optional[int] = _value(ge=1)  #: env steps per env and iteration; null: one full episode
    stagger_episodes: bool = MISSING  #: with unroll_length: cut each env's first episode short at a random step
    num_workers: int = _value(ge=0)  #: collector processes (0: this process)
    env_backend: EnvStepping = MISSING  #: batched (BatchedDMControlEnv) | serial | parallel (TorchRL's)
    compile_policy: bool = MISSING  #: torch.compile the collection policy in each worker
    backend: CollectorBackend = MISSING  #: local (processes here) | ray (Ray actors)
    ray_address: Optional[str] = MISSING  #: null: start Ray here; "auto" or "ray://host:10001": a running cluster


@dataclass
class EvalConfig:
    """Deterministic evaluation on full 1000-step episodes."""

    num_episodes: int = _value(ge=1)  #: episodes per evaluation
    num_envs: int = _value(ge=1)  #: envs stepped together
    num_evals: int = _value(ge=1)  #: evaluations per stage (plus one after the last update)
    target_return: Optional[float] = MISSING  #: end the run at the first evaluation reaching it; null: never


@dataclass
class LoggerConfig:
    """Metrics logging (eval.csv and summary.json are written in any case)."""

    backend: Optional[LoggerBackend] = MISSING  #: csv | wandb | tensorboard | "" or none (no logger)
    project: str = MISSING  #: wandb project
    group: Optional[str] = MISSING  #: wandb group
    exp_name: str = MISSING  #: prefix of the experiment's name
    wandb_mode: WandbMode = MISSING  #: online | offline | disabled
    progress_bar: bool = MISSING  #: a tqdm bar over env steps


@dataclass
class CheckpointConfig:
    """Checkpoints: the run's state at stage boundaries (and more often with interval_frames), for resuming."""

    dir: str = MISSING  #: directory, relative to the run directory
    interval_frames: int = _value(ge=0)  #: also save every this many encoder env steps (0: stage ends only)
    keep_all: bool = MISSING  #: keep every checkpoint, not only the latest
    keep_best: bool = MISSING  #: also keep the one written after the best evaluation
    resume: Optional[str] = MISSING  #: a checkpoint file or its directory (the latest) to resume from


@dataclass
class RunConfig:
    """What every script's config has."""

    device: str = MISSING  #: auto (CUDA when present) | cpu | cuda | cuda:<i>
    num_threads: Optional[int] = _value(ge=1)  #: torch intra-op threads of the main process; null: torch's default
    config_version: int = CONFIG_VERSION  #: the format of this config (:data:`CONFIG_VERSION`)


@dataclass
class GoRLConfig(RunConfig):
    """``gorl_ppo.yaml`` (and ``ppo_gaussian.yaml``, which leaves the decoder and refit groups unused)."""

    env: EnvConfig = _group(EnvConfig)
    encoder: EncoderConfig = _group(EncoderConfig)
    decoder: DecoderConfig = _group(DecoderConfig)
    ppo: PPOConfig = _group(PPOConfig)
    schedule: ScheduleConfig = _group(ScheduleConfig)
    refit: RefitConfig = _group(RefitConfig)
    collector: CollectorConfig = _group(CollectorConfig)
    eval: EvalConfig = _group(EvalConfig)
    logger: LoggerConfig = _group(LoggerConfig)
    checkpoint: CheckpointConfig = _group(CheckpointConfig)


@dataclass
class FlowPolicyConfig:
    """The flow policy of the direct baselines: a velocity MLP on [normalised observation, x_t, emb(t)]."""

    num_cells: List[int] = _value(ge=1)  #: hidden layer sizes
    num_steps: int = _value(ge=1)  #: Euler steps from x_1 ~ N(0, I) to the action
    output_scale: float = _value(gt=0)  #: scale of the velocity output


@dataclass
class FPOLossConfig:
    """Flow Policy Optimization's ratio from conditional flow-matching losses."""

    num_mc_samples: int = _value(ge=1)  #: (t, eps) pairs per action, drawn at collection time
    ratio: FPORatio = MISSING  #: per_sample: exp(clip(l_old_i - l_new_i)) | mean: the FPO paper's
    log_ratio_clip: float = _value(gt=0)  #: clip of the log-ratio
    t_sampling: TSampling = MISSING  #: grid: t on the Euler grid | uniform: U(0, 1)
    cfm_weighting: CFMWeighting = MISSING  #: eps: (1 - t)^2-weighted velocity error | velocity: unweighted


@dataclass
class DPPOLossConfig:
    """DPPO: PPO over the denoising steps of a stochastic (Euler-Maruyama) flow policy."""

    sde_sigma: float = _value(gt=0)  #: noise of every step (the last one included)
    log_prob_min_std: float = _value(ge=0)  #: floor of the step std in the likelihood
    noise_clip: Optional[float] = _value(gt=0)  #: clip of the step noise; null: none
    num_finetune_steps: Optional[int] = _value(ge=1)  #: train the last K steps; null: all
    aggregate: Aggregate = MISSING  #: sum | mean of the log-probabilities over action dims
    log_prob_clamp: Optional[List[float]] = MISSING  #: [low, high] per-dimension clamp; null: none
    denoising_discount: float = _value(gt=0, le=1)  #: discount along the denoising chain
    clip_epsilon_base: Optional[float] = MISSING  #: a clip growing from this (noisiest step) to schedule.clip_epsilon


@dataclass
class FPOConfig(GoRLConfig):
    """``fpo.yaml``: gorl_ppo.yaml's groups (the critic among them) and the flow policy with FPO's loss."""

    policy: FlowPolicyConfig = _group(FlowPolicyConfig)
    fpo: FPOLossConfig = _group(FPOLossConfig)


@dataclass
class DPPOConfig(GoRLConfig):
    """``dppo.yaml``: gorl_ppo.yaml's groups and the flow policy with DPPO's loss."""

    policy: FlowPolicyConfig = _group(FlowPolicyConfig)
    dppo: DPPOLossConfig = _group(DPPOLossConfig)


# --------------------------------------------------------------------------- offline scripts: gmpo, gmpg
@dataclass
class OfflineEnvConfig:
    """The dataset's task: evaluation runs there."""

    task: str = MISSING  #: dm_control "domain-task" or the paper's name
    seed: int = _value(ge=0)  #: seed of torch and the evaluation envs


@dataclass
class DatasetConfig:
    """Transitions a GoRL run saved (schedule.save_decoder_data=true)."""

    paths: List[str] = MISSING  #: replay-buffer directories, e.g. [outputs/.../datasets/stage0] (required)
    batch_size: int = _value(ge=1)  #: minibatch size


@dataclass
class CriticConfig:
    """IQL critics: expectile V, double Q with a Polyak target."""

    num_cells: List[int] = _value(ge=1)  #: hidden layer sizes
    steps: int = _value(ge=1)  #: gradient steps
    lr: float = _value(gt=0)  #: Adam learning rate
    expectile: float = _value(gt=0, lt=1)  #: expectile of V
    gamma: float = _value(gt=0, le=1)  #: discount
    tau: float = _value(gt=0)  #: Polyak rate of the target


@dataclass
class GMPOPolicyConfig:
    """GMPO's advantage-weighted generative policy."""

    steps: int = _value(ge=1)  #: gradient steps
    lr: float = _value(gt=0)  #: Adam learning rate
    beta: float = _value(ge=0)  #: inverse temperature of the weights exp(beta A) (0: behaviour cloning)
    max_weight: float = _value(gt=0)  #: the largest weight
    num_noise_samples: int = _value(ge=1)  #: noise draws per row in the generative loss


@dataclass
class GMPGPolicyConfig(GMPOPolicyConfig):
    """GMPG's policy: the pathwise gradient, KL-anchored to the behaviour flow."""

    beta: float = _value(gt=0)  #: weight of the Q term against the KL to the behaviour flow
    batch_size: int = _value(ge=1)  #: minibatch size of the policy steps
    divergence: Divergence = MISSING  #: exact: d backward passes per Euler step | hutchinson: one probe


@dataclass
class BehaviourConfig:
    """GMPG's behaviour flow, fit first."""

    steps: int = _value(ge=1)  #: gradient steps
    lr: float = _value(gt=0)  #: Adam learning rate


@dataclass
class OfflineEvalConfig:
    """Evaluation as online: deterministic, full 1000-step episodes."""

    num_episodes: int = _value(ge=1)  #: episodes per evaluation
    num_envs: int = _value(ge=1)  #: envs stepped together
    interval: int = _value(ge=1)  #: policy steps between evaluations (plus one at the end)


@dataclass
class GMPOConfig(RunConfig):
    """``gmpo.yaml``: GMPO on a saved dataset."""

    env: OfflineEnvConfig = _group(OfflineEnvConfig)
    dataset: DatasetConfig = _group(DatasetConfig)
    decoder: DecoderConfig = _group(DecoderConfig)
    critic: CriticConfig = _group(CriticConfig)
    policy: GMPOPolicyConfig = _group(GMPOPolicyConfig)
    eval: OfflineEvalConfig = _group(OfflineEvalConfig)
    logger: LoggerConfig = _group(LoggerConfig)


@dataclass
class GMPGConfig(GMPOConfig):
    """``gmpg.yaml``: gmpo.yaml's groups, GMPG's policy and the behaviour flow."""

    policy: GMPGPolicyConfig = _group(GMPGPolicyConfig)
    behaviour: BehaviourConfig = _group(BehaviourConfig)


#: the schema of each script (``method``); ppo_gaussian.py reads gorl_ppo.yaml
SCHEMAS: dict[str, type] = {"gorl": GoRLConfig, "ppo_gaussian": GoRLConfig, "fpo": FPOConfig, "dppo": DPPOConfig,
                            "gmpo": GMPOConfig, "gmpg": GMPGConfig}
METHODS = tuple(SCHEMAS)


def register_configs() -> None:
    """Stores the schemas in Hydra's ``ConfigStore`` as ``<script>_schema`` (done when this module is imported),
    for the YAML files' defaults lists."""
    store = ConfigStore.instance()
    for name, schema in (("gorl_ppo", GoRLConfig), ("fpo", FPOConfig), ("dppo", DPPOConfig), ("gmpo", GMPOConfig),
                         ("gmpg", GMPGConfig)):
        store.store(name=f"{name}_schema", node=schema)


register_configs()


# --------------------------------------------------------------------------- checks
def _typed(cfg: DictConfig, method: str) -> DictConfig:
    """``cfg`` as its method's schema sees it: a composed config as it is, a plain one merged into the schema (which
    checks its types and choices and names the key of a bad one)."""
    if dataclasses.is_dataclass(OmegaConf.get_type(cfg)):
        return cfg
    return OmegaConf.merge(OmegaConf.structured(SCHEMAS[method]), cfg)


def check_values(cfg: DictConfig, prefix: str = "") -> None:
    """Every value is set, and each value (or list entry) lies in its field's range (``_value(...)``)."""
    schema = OmegaConf.get_type(cfg)
    fields = dataclasses.fields(schema) if dataclasses.is_dataclass(schema) else ()
    bounds_of = {f.name: f.metadata.get("bounds") for f in fields}
    optional = {name for name, hint in (typing.get_type_hints(schema) if fields else {}).items()
                if type(None) in typing.get_args(hint)}
    for name in cfg:
        key = f"{prefix}{name}"
        if OmegaConf.is_missing(cfg, name):
            raise ValueError(f"config key {key} has no value (???): set it in the YAML file or on the command line.")
        value = cfg[name]
        if isinstance(value, DictConfig):
            check_values(value, f"{key}.")
            continue
        bounds = bounds_of.get(name)
        if not bounds or value is None:
            continue
        entries = list(enumerate(value)) if isinstance(value, ListConfig) else [(None, value)]
        if isinstance(value, ListConfig) and not entries:
            raise ValueError(f"config key {key} must be a non-empty list, got [].")
        for i, entry in entries:
            if not _in_bounds(entry, bounds):
                what = _describe(bounds, isinstance(entry, int))
                if i is None and name in optional:
                    what = f"null or {what}"
                raise ValueError(f"config key {key}{'' if i is None else f'[{i}]'} must be {what}, got {entry!r}.")


def validate_config(cfg: DictConfig, *, method: str = "gorl") -> None:
    """Fails at start-up, naming the key, on anything the run of ``method`` (``gorl``, ``ppo_gaussian``, ``fpo``,
    ``dppo``, ``gmpo``, ``gmpg``) would otherwise trip over later.

    Types and choices are the schema's (:data:`SCHEMAS`), checked by Hydra as it composes; then every value's range,
    the rules between keys, and last what the config needs installed (:func:`check_installed`), so that a bad key is
    named the same way with or without the optional extras."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; one of {list(METHODS)}.")
    cfg = _typed(cfg, method)
    check_values(cfg)
    if cfg.config_version != CONFIG_VERSION:
        raise ValueError(f"config key config_version = {cfg.config_version}: this code reads configs of version "
                         f"{CONFIG_VERSION}.")
    if cfg.device not in DEVICES:
        raise ValueError(f"config key device must be one of {list(DEVICES)}, got {cfg.device!r}.")
    if method in ("gmpo", "gmpg"):
        _check_offline(cfg, method)
    else:
        _check_online(cfg, method)
    check_installed(cfg)


def _check_offline(cfg: DictConfig, method: str) -> None:
    try:
        resolve_task(cfg.env.task)
    except ValueError as err:
        raise ValueError(f"config key env.task: {err}") from None
    if not cfg.dataset.paths:
        raise ValueError("config key dataset.paths must name at least one dataset (e.g. a GoRL run's "
                         "datasets/stage0, written with schedule.save_decoder_data=true).")
    if method == "gmpg" and cfg.decoder.type != "flow":  # GMPG needs the flow's log-density
        raise ValueError(f"config key decoder.type must be one of ['flow'] for gmpg.py, got {cfg.decoder.type!r}.")


def _check_online(cfg: DictConfig, method: str) -> None:
    playground = cfg.env.backend == "playground"
    try:
        resolve_playground_task(cfg.env.task) if playground else resolve_task(cfg.env.task)
    except ValueError as err:
        raise ValueError(f"config key env.task: {err}") from None
    collector = cfg.collector
    workers, address = collector.num_workers, collector.ray_address
    if workers and collector.num_envs % workers:
        raise ValueError(f"config key collector.num_envs = {collector.num_envs} must be a multiple of "
                         f"collector.num_workers = {workers}.")
    if collector.backend == "ray" and workers < 1:
        raise ValueError(f"config key collector.num_workers must be at least 1 with collector.backend=ray "
                         f"(one Ray actor per worker), got {workers}.")
    if address is not None and (not address.strip() or (address != "auto" and ":" not in address)):
        raise ValueError(f'config key collector.ray_address must be null (start Ray here), "auto" or a cluster '
                         f'address such as "ray://head:10001", got {address!r}.')
    if address is not None and collector.backend != "ray":
        raise ValueError(f"config key collector.ray_address = {address!r} is only used with collector.backend=ray.")
    if cfg.ppo.compile_step and method not in ("gorl", "ppo_gaussian"):
        raise ValueError(f"config key ppo.compile_step=true supports gorl_ppo.py and ppo_gaussian.py only, not {method}.")
    if cfg.ppo.compile or cfg.ppo.compile_step:
        check_compile_backend(cfg)
    _check_budgets(cfg)
    if method == "dppo":
        _check_dppo(cfg)


def _check_budgets(cfg: DictConfig) -> None:
    """Stage budgets against the PPO iteration, and the per-stage tables against the number of stages."""
    stages, frames, unroll = cfg.schedule.num_stages, cfg.schedule.stage_frames, cfg.collector.unroll_length
    if len(frames) != stages:
        raise ValueError(f"config key schedule.stage_frames has {len(frames)} entries but schedule.num_stages is {stages}.")
    per_iteration = cfg.collector.num_envs * (unroll or EPISODE_LENGTH)
    for i, f in enumerate(frames):
        if f < per_iteration:
            raise ValueError(f"config key schedule.stage_frames[{i}] = {f} is less than one PPO iteration "
                             f"(collector.num_envs x {unroll or EPISODE_LENGTH} = {per_iteration} env steps).")
        if unroll is not None and f % per_iteration:
            raise ValueError(f"config key collector.unroll_length = {unroll}: one PPO iteration (collector.num_envs x "
                             f"unroll_length = {per_iteration} env steps) does not divide schedule.stage_frames[{i}] = {f}.")
    if per_iteration % cfg.ppo.num_minibatches:
        raise ValueError(f"config key ppo.num_minibatches = {cfg.ppo.num_minibatches} does not divide the "
                         f"{per_iteration} env steps of one PPO iteration.")
    for key in ("clip_epsilon", "max_grad_norm", "latent_prior_coeff"):
        if len(cfg.schedule[key]) > stages:
            raise ValueError(f"config key schedule.{key} has {len(cfg.schedule[key])} entries for {stages} stages.")


def _check_dppo(cfg: DictConfig) -> None:
    dppo, steps = cfg.dppo, cfg.policy.num_steps
    if dppo.num_finetune_steps is not None and dppo.num_finetune_steps > steps:
        raise ValueError(f"config key dppo.num_finetune_steps = {dppo.num_finetune_steps} exceeds policy.num_steps = {steps}.")
    clamp = dppo.log_prob_clamp
    if clamp is not None and not (len(clamp) == 2 and clamp[0] < clamp[1]):
        raise ValueError(f"config key dppo.log_prob_clamp must be null or [low, high] with low < high, got {list(clamp)}.")
    base, final = dppo.clip_epsilon_base, cfg.schedule.clip_epsilon[0]  # stage 0's clip: DPPO runs one stage
    if base is not None and not 0 < base <= final:
        raise ValueError(f"config key dppo.clip_epsilon_base must be null or in (0, schedule.clip_epsilon = {final}], "
                         f"got {base!r}: the clip range grows along the chain.")


def check_installed(cfg: DictConfig) -> None:
    """What a config whose values :func:`validate_config` has checked needs installed: the optional extras its
    backends use, and a C++ compiler for inductor on CPU. Each error names the key and how to get it."""
    if OmegaConf.select(cfg, "env.backend") == "playground":
        if not playground_available():
            raise ValueError(f"config key env.backend=playground needs MuJoCo Playground: {INSTALL_HINT}.")
        if cfg.env.playground_impl == "warp" and importlib.util.find_spec("warp") is None:
            raise ValueError(f"config key env.playground_impl=warp needs MuJoCo Warp (warp-lang): {INSTALL_HINT}, "
                             "or env.playground_impl=jax (MJX).")
    if OmegaConf.select(cfg, "collector.backend") == "ray" and importlib.util.find_spec("ray") is None:
        raise ValueError('config key collector.backend=ray needs the ray package: pip install -e ".[distributed]".')
    if cfg.logger.backend == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise ValueError('config key logger.backend=tensorboard needs the tensorboard package: pip install -e ".[tensorboard]".')
    for key in ("ppo.compile", "ppo.compile_step"):
        if OmegaConf.select(cfg, key) and cfg.ppo.compile_backend == "inductor":
            check_cpp_compiler(cfg, key)
    if OmegaConf.select(cfg, "collector.compile_policy"):
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


def check_config_version(saved_config: Mapping[str, Any]) -> None:
    """A checkpoint's config (``saved_config``, as saved) is in this code's format, :data:`CONFIG_VERSION`: else its
    keys cannot be compared with this run's, and the run it belongs to is resumed with the code that wrote it.

    >>> check_config_version({"config_version": CONFIG_VERSION})
    >>> check_config_version({"env": {}})
    Traceback (most recent call last):
    ...
    ValueError: config key config_version: the checkpoint's config has no config_version (written before version 2), this code reads version 2: resume it with the code that wrote it (git checkout the commit in the run's command.txt, or the one it ran at).
    """
    version = saved_config.get("config_version")
    if version != CONFIG_VERSION:
        written = (f"no config_version (written before version {CONFIG_VERSION})" if version is None
                   else f"config_version {version!r}")
        raise ValueError(f"config key config_version: the checkpoint's config has {written}, this code reads version "
                         f"{CONFIG_VERSION}: resume it with the code that wrote it (git checkout the commit in the "
                         "run's command.txt, or the one it ran at).")
