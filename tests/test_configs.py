"""The scripts' typed configs (``torchrl_gorl.configs``): every YAML file composes against its schema; Hydra refuses a
wrong type or choice while it composes, and ``validate_config`` a value out of range or a broken rule between keys,
before any compute, each naming the key and the value."""
import dataclasses
import importlib.util
import inspect
import json
import pathlib
import pickle
import re
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import MISSING, OmegaConf, ValidationError

from torchrl_gorl import configs
from torchrl_gorl.configs import (
    check_config_version,
    CONFIG_VERSION,
    DPPOConfig,
    FPOConfig,
    GMPGConfig,
    GMPOConfig,
    GoRLConfig,
    validate_config,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "sota-implementations" / "config"
#: each YAML file at the top of config/: the method validate_config checks it as, and its schema
SCRIPTS = {"gorl_ppo": ("gorl", GoRLConfig), "ppo_gaussian": ("ppo_gaussian", GoRLConfig), "fpo": ("fpo", FPOConfig),
           "dppo": ("dppo", DPPOConfig), "gmpo": ("gmpo", GMPOConfig), "gmpg": ("gmpg", GMPGConfig)}
PRESETS = sorted(path.stem for path in (CONFIG_DIR / "preset").glob("*.yaml"))


def _compose(*overrides: str, config: str = "gorl_ppo"):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config, overrides=list(overrides))


def _composition_error(*overrides: str, config: str = "gorl_ppo") -> str:
    """What Hydra says when it refuses ``overrides``: its message and OmegaConf's cause (which has ``full_key``)."""
    with pytest.raises(ConfigCompositionException) as info:
        _compose(*overrides, config=config)
    return f"{info.value}\n{info.value.__cause__}"


# --------------------------------------------------------------------------- the YAML files and their schemas
def test_the_yaml_files_are_the_scripts_and_the_presets():
    assert {path.stem for path in CONFIG_DIR.glob("*.yaml")} == set(SCRIPTS)
    assert {"cpu", "cpu_fast", "cpu_fast_15m", "paper", "smoke"} <= set(PRESETS)


@pytest.mark.parametrize("preset", [None, *PRESETS])
@pytest.mark.parametrize("config", list(SCRIPTS))
def test_every_yaml_composes_against_its_schema(config, preset, monkeypatch):
    """Every script's config, with every preset (the online ones), is typed by its schema, sets every key and passes
    the start-up checks (what it needs installed aside: a C++ compiler, the extras)."""
    method, schema = SCRIPTS[config]
    offline = method in ("gmpo", "gmpg")
    if offline and preset is not None:
        pytest.skip("the offline scripts have no presets")
    overrides = ["dataset.paths=[somewhere]"] if offline else [f"preset={preset}"] if preset else []
    cfg = _compose(*overrides, config=config)
    assert OmegaConf.get_type(cfg) is schema
    assert cfg.config_version == CONFIG_VERSION
    monkeypatch.setattr(configs, "check_installed", lambda cfg: None)
    validate_config(cfg, method=method)


def test_the_base_file_holds_what_the_default_command_runs():
    """gorl_ppo.yaml's own values are the default command's: its default preset changes nothing."""
    base = OmegaConf.load(CONFIG_DIR / "gorl_ppo.yaml")
    base = OmegaConf.merge(OmegaConf.structured(GoRLConfig), {k: v for k, v in base.items() if k not in ("defaults", "hydra")})
    assert OmegaConf.to_container(base) == OmegaConf.to_container(_compose())
    assert OmegaConf.to_container(_compose("preset=cpu_fast")) == OmegaConf.to_container(_compose())


def test_every_yaml_value_has_its_comment():
    """Each key the YAML files set has a comment on its line saying what it does."""
    files = sorted(CONFIG_DIR.glob("*.yaml")) + sorted((CONFIG_DIR / "preset").glob("*.yaml"))
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"\s*(- )?[a-z_]+: [^#\s]", line):
                assert "#" in line, f"{path.name}:{number}: {line}"


def test_every_schema_field_is_documented():
    """Each field of the schemas has its comment (``#:``) saying what it does."""
    classes = [cls for _, cls in inspect.getmembers(configs, inspect.isclass)
               if cls.__module__ == configs.__name__ and hasattr(cls, "__dataclass_fields__")]
    assert GoRLConfig in classes and len(classes) > 15
    for cls in classes:
        source = inspect.getsource(cls)
        for name, field in cls.__dataclass_fields__.items():
            lines = [line for line in source.splitlines() if line.strip().startswith(f"{name}:")]
            if lines:  # declared here, not inherited
                assert "#:" in lines[0] or field.default_factory is not dataclasses.MISSING, f"{cls.__name__}.{name}"


def test_choices_read_as_their_strings():
    """A choice in a composed config is an enum member that compares, prints, hashes and serialises as its string:
    the scripts, the checkpoints and the logs see the same values as before the schemas."""
    cfg = _compose("preset=smoke", "logger.backend=")
    value = cfg.decoder.type
    assert value == "flow" and str(value) == f"{value}" == "flow" and repr(value) == "'flow'" and hash(value) == hash("flow")
    assert {"flow": 1}[value] == 1 and isinstance(value, str)
    assert cfg.logger.backend == "" and not cfg.logger.backend  # "" (no logger): falsy, as before
    assert _compose("logger.backend=none").logger.backend == ""
    container = OmegaConf.to_container(cfg, resolve=True)
    assert json.loads(json.dumps(container))["decoder"]["type"] == "flow"
    assert pickle.loads(pickle.dumps(cfg)) == cfg  # collector workers and Ray actors receive it


# --------------------------------------------------------------------------- hydra-free: the dataclasses
def test_the_schema_rejects_a_wrong_type_naming_the_key():
    cfg = OmegaConf.structured(GoRLConfig)
    with pytest.raises(ValidationError) as info:
        cfg.ppo.lr = "x"
    assert info.value.full_key == "ppo.lr" and "'x'" in str(info.value)
    with pytest.raises(ValidationError) as info:
        cfg.decoder.type = "gan"
    assert info.value.full_key == "decoder.type" and "'gan'" in str(info.value) and "flow, diffusion" in str(info.value)
    with pytest.raises(ValidationError) as info:
        OmegaConf.merge(OmegaConf.structured(FPOConfig), {"fpo": {"num_mc_samples": 2.5}})
    assert info.value.full_key == "fpo.num_mc_samples"
    with pytest.raises(Exception, match="Key 'lr_typo' not in 'PPOConfig'"):
        OmegaConf.merge(OmegaConf.structured(GoRLConfig), {"ppo": {"lr_typo": 1.0}})
    cfg.collector.num_envs = "8"  # what the YAML or the command line gives is converted to the field's type
    assert cfg.collector.num_envs == 8


def test_validate_config_types_a_plain_config():
    """A config that is not typed (a plain dict, a checkpoint's) gets its method's schema first."""
    plain = OmegaConf.create(OmegaConf.to_container(_compose("preset=smoke"), resolve=True))
    validate_config(plain)
    plain.ppo.lr = "fast"
    with pytest.raises(ValidationError) as info:
        validate_config(plain)
    assert info.value.full_key == "ppo.lr"


def test_a_key_without_a_value_is_named():
    cfg = _compose("preset=smoke")
    cfg.ppo.lr = MISSING
    with pytest.raises(ValueError, match=r"config key ppo.lr has no value \(\?\?\?\)"):
        validate_config(cfg)


# --------------------------------------------------------------------------- config format version
def test_config_version_is_checked():
    saved = OmegaConf.to_container(_compose("preset=smoke"), resolve=True)
    assert saved["config_version"] == CONFIG_VERSION
    check_config_version(saved)
    del saved["config_version"]
    with pytest.raises(ValueError, match="config key config_version: the checkpoint's config has no config_version "
                                         r".*resume it with the code that wrote it \(git checkout the commit"):
        check_config_version(saved)
    with pytest.raises(ValueError, match="the checkpoint's config has config_version 1, this code reads version 2"):
        check_config_version({**saved, "config_version": 1})
    with pytest.raises(ValueError, match="config key config_version = 1: this code reads configs of version 2"):
        validate_config(_compose("preset=smoke", "config_version=1"))


# --------------------------------------------------------------------------- gorl_ppo.py and ppo_gaussian.py
@pytest.mark.parametrize(
    "override,key,value",
    [
        ("decoder.type=gan", "decoder.type", "gan"),
        ("collector.stagger_episodes=maybe", "collector.stagger_episodes", "maybe"),
        ("ppo.compile=maybe", "ppo.compile", "maybe"),
        ("eval.target_return=high", "eval.target_return", "high"),
        ("ppo.lr=fast", "ppo.lr", "fast"),
        ("collector.num_envs=2.5", "collector.num_envs", "2.5"),
    ],
)
def test_hydra_refuses_a_wrong_type_or_choice_naming_the_key(override, key, value):
    error = _composition_error("preset=smoke", override)
    assert f"full_key: {key}" in error and f"'{value}'" in error and override in error


@pytest.mark.parametrize("override,key", [("ppo.compile_step=yes", "ppo.compile_step"),
                                          ("collector.compile_policy=1", "collector.compile_policy")])
def test_hydra_reads_yaml_spellings_of_true(override, key):
    """A bool key takes what YAML and Hydra read as true (``yes``, ``1``), as the boolean true."""
    assert OmegaConf.select(_compose("preset=smoke", override), key) is True


@pytest.mark.parametrize(
    "override,message",
    [
        ("env.task=cheetah-walk", "env.task: unknown task 'cheetah-walk'"),
        ("schedule.stage_frames=[4000]", "schedule.stage_frames has 1 entries but schedule.num_stages is 2"),
        ("collector.num_envs=0", "collector.num_envs must be a positive integer, got 0"),
        ("num_threads=0", "num_threads must be null or a positive integer, got 0"),
        ("decoder.num_cells=[32,-4]", r"decoder.num_cells\[1\] must be a positive integer, got -4"),
        ("schedule.stage_frames=[500,4000]", r"schedule.stage_frames\[0\] = 500 is less than one PPO iteration"),
        ("ppo.num_minibatches=3", "ppo.num_minibatches = 3 does not divide"),
        ("schedule.clip_epsilon=[]", "schedule.clip_epsilon must be a non-empty list"),
        ("refit.val_fraction=1.5", r"refit.val_fraction must be in \(0, 1\), got 1.5"),
        ("schedule.clip_epsilon=[0.2,1.5]", r"schedule.clip_epsilon\[1\] must be in \(0, 1\), got 1.5"),
        ("refit.max_samples=0", "refit.max_samples must be null or a positive integer, got 0"),
        ("refit.action_clip=-3", r"refit.action_clip must be null or a positive number, got -3.0"),
        ("checkpoint.interval_frames=-5", "checkpoint.interval_frames must be a non-negative integer, got -5"),
        ("collector.unroll_length=0", "collector.unroll_length must be null or a positive integer, got 0"),
        ("collector.unroll_length=300",
         r"collector.unroll_length = 300: one PPO iteration \(collector.num_envs x unroll_length = 600 env steps\) "
         r"does not divide schedule.stage_frames\[0\] = 4000"),
        ("collector.num_workers=3", "collector.num_envs = 2 must be a multiple of collector.num_workers = 3"),
        ("schedule.clip_epsilon=[0.2,0.3,0.3]", "schedule.clip_epsilon has 3 entries for 2 stages"),
        ("decoder.num_diffusion_steps=1", "decoder.num_diffusion_steps must be at least 2, got 1"),
        ("env.gamma=1.5", r"env.gamma must be null or in \(0, 1\], got 1.5"),
        ("device=tpu", "device must be one of"),
    ],
)
def test_bad_config_names_the_key(override, message):
    cfg = _compose("preset=smoke", override)
    with pytest.raises(ValueError, match=f"config key {message}"):
        validate_config(cfg)


def test_compile_step_is_refused_for_other_losses():
    """FPO and DPPO bring their own ``ClipPPOLoss`` subclasses: the one-graph step is refused before any compute."""
    cfg = _compose("preset=smoke", "ppo.compile_step=true")
    for method in ("fpo", "dppo"):
        with pytest.raises(ValueError, match=f"ppo.compile_step=true supports gorl_ppo.py and ppo_gaussian.py only, not {method}"):
            validate_config(cfg, method=method)


def test_bad_compile_backend_names_the_key():
    cfg = _compose("preset=smoke", "ppo.compile=true", "ppo.compile_backend=turbo")
    with pytest.raises(ValueError, match="ppo.compile_backend = 'turbo' is not a torch.compile backend"):
        validate_config(cfg)


@pytest.mark.parametrize("key", ["ppo.compile", "ppo.compile_step", "collector.compile_policy"])
def test_compiling_without_a_cpp_compiler_names_the_key(key, monkeypatch):
    """Inductor on CPU writes C++: without a compiler on PATH, either switch fails at start-up, naming itself."""
    monkeypatch.setattr(configs.shutil, "which", lambda name: None)
    cfg = _compose("preset=smoke", f"{key}=true")
    message = rf"config key {key}=true: inductor on CPU needs a C\+\+ compiler .* set {key}=false"
    with pytest.raises(ValueError, match=message):
        validate_config(cfg)
    validate_config(_compose("preset=smoke", f"{key}=false"))  # eager needs none


def test_accepts_paper_task_names():
    validate_config(_compose("preset=smoke", "env.task=HopperStand"))


def test_paper_preset_matches_the_reference_budgets():
    cfg = _compose("preset=paper")
    validate_config(cfg)
    assert list(cfg.schedule.stage_frames) == [60_000_000, 60_000_000, 30_000_000, 30_000_000]
    assert cfg.collector.num_envs == 2048 and cfg.ppo.epochs == 16 and cfg.ppo.num_minibatches == 32


def test_script_reports_a_wrong_type_before_any_compute(tmp_path):
    cmd = [sys.executable, str(ROOT / "sota-implementations" / "gorl_ppo.py"), "preset=smoke", "ppo.lr=fast",
           f"hydra.run.dir={tmp_path}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "ppo.lr=fast" in result.stderr and "full_key: ppo.lr" in result.stderr
    assert not (tmp_path / "checkpoints").exists()


# --------------------------------------------------------------------------- env.backend=playground
@pytest.mark.parametrize(
    "overrides,message",
    [
        (["env.backend=playground", "env.task=CheetahWalk"],
         "config key env.task: unknown MuJoCo Playground task 'CheetahWalk'"),
        (["env.backend=playground", "env.task=quadruped-walk"], "config key env.task: unknown MuJoCo Playground task"),
    ],
)
def test_bad_playground_config_names_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate_config(_compose("preset=smoke", *overrides))


@pytest.mark.parametrize("override,key,value", [("env.backend=brax", "env.backend", "brax"),
                                                ("env.playground_impl=mjx", "env.playground_impl", "mjx")])
def test_bad_playground_choice_names_the_key(override, key, value):
    error = _composition_error("preset=smoke", "env.backend=playground", override)
    assert f"full_key: {key}" in error and f"'{value}'" in error


def test_playground_config_without_the_extra_names_the_key_and_the_fix(monkeypatch):
    find_spec = importlib.util.find_spec  # the extra hidden
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mujoco_playground" else find_spec(name, *a))
    fix = r'config key env.backend=playground needs .*pip install -e "\.\[playground\]"'
    with pytest.raises(ValueError, match=fix):
        validate_config(_compose("preset=smoke", "env.backend=playground"))
    validate_config(_compose("preset=smoke"))  # dm_control runs need no extra


def test_playground_config_accepts_every_playground_name(monkeypatch):
    monkeypatch.setattr(configs, "playground_available", lambda: True)  # the names, with or without the extra
    for name in ("CheetahRun", "cheetah-run", "PointMass", "HumanoidWalk"):
        validate_config(_compose("preset=smoke", "env.backend=playground", f"env.task={name}"))
    validate_config(_compose("preset=smoke", "env.task=PointMass"))  # and dm_control runs them as point_mass-easy


# --------------------------------------------------------------------------- collector.backend=ray
@pytest.mark.parametrize(
    "overrides,message",
    [
        (["collector.backend=ray", "collector.num_workers=0"],
         "collector.num_workers must be at least 1 with collector.backend=ray"),
        (["collector.backend=ray", "collector.num_workers=2", "collector.ray_address=6379"],
         "collector.ray_address must be null"),
        (["collector.backend=ray", "collector.num_workers=2", "collector.ray_address=''"],
         "collector.ray_address must be null"),
        (["collector.ray_address=auto"], "collector.ray_address = 'auto' is only used with collector.backend=ray"),
        (["collector.backend=ray", "collector.num_workers=3"], "collector.num_envs = 2 must be a multiple"),
    ],
)
def test_bad_ray_config_names_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate_config(_compose("preset=smoke", *overrides))


def test_unknown_collector_backend_names_the_key():
    error = _composition_error("preset=smoke", "collector.backend=dask")
    assert "full_key: collector.backend" in error and "'dask'" in error and "[local, ray]" in error


def test_ray_backend_without_ray_names_the_key_and_the_fix(monkeypatch):
    find_spec = configs.importlib.util.find_spec
    monkeypatch.setattr(configs.importlib.util, "find_spec",
                        lambda name, *args: None if name == "ray" else find_spec(name, *args))
    fix = r'collector.backend=ray needs the ray package: pip install -e "\.\[distributed\]"'
    with pytest.raises(ValueError, match=fix):
        validate_config(_compose("preset=smoke", "collector.backend=ray", "collector.num_workers=2"))


# --------------------------------------------------------------------------- fpo.py and dppo.py
@pytest.mark.parametrize(
    "config,override,message",
    [
        ("fpo", "policy.num_cells=[32,0]", r"policy.num_cells\[1\] must be a positive integer"),
        ("dppo", "dppo.sde_sigma=0.0", "dppo.sde_sigma must be a positive number, got 0.0"),
        ("dppo", "dppo.num_finetune_steps=20", "dppo.num_finetune_steps = 20 exceeds policy.num_steps = 10"),
        ("dppo", "dppo.log_prob_clamp=[2,-5]", "dppo.log_prob_clamp must be null or"),
        ("dppo", "dppo.clip_epsilon_base=0.5", r"dppo.clip_epsilon_base must be null or in \(0, schedule.clip_epsilon"),
    ],
)
def test_bad_baseline_config_names_the_key(config, override, message):
    with pytest.raises(ValueError, match=message):
        validate_config(_compose("preset=smoke", override, config=config), method=config)


def test_bad_baseline_choice_names_the_key():
    error = _composition_error("preset=smoke", "fpo.ratio=median", config="fpo")
    assert "full_key: fpo.ratio" in error and "'median'" in error and "[per_sample, mean]" in error


# --------------------------------------------------------------------------- gmpo.py and gmpg.py
@pytest.mark.parametrize(
    "script,override,message",
    [
        ("gmpo", "policy.num_noise_samples=0", "policy.num_noise_samples must be a positive integer"),
        ("gmpo", "decoder.num_diffusion_steps=1", "decoder.num_diffusion_steps must be at least 2"),
        ("gmpg", "decoder.type=diffusion", "decoder.type must be one of"),
        ("gmpg", "critic.expectile=1.5", r"critic.expectile must be in \(0, 1\)"),
        ("gmpg", "policy.beta=0", "policy.beta must be a positive number, got 0.0"),
        ("gmpo", "dataset.paths=[]", "dataset.paths must name at least one dataset"),
    ],
)
def test_offline_bad_config_names_the_key(script, override, message):
    cfg = _compose("dataset.paths=[somewhere]", override, config=script)
    with pytest.raises(ValueError, match=message):
        validate_config(cfg, method=script)


def test_gmpo_takes_beta_zero_as_behaviour_cloning():
    validate_config(_compose("dataset.paths=[somewhere]", "policy.beta=0", config="gmpo"), method="gmpo")


@pytest.mark.parametrize("overrides,saved,caveat", [
    ([], {}, None),  # full-episode batches: every batch a function of its seed
    (["collector.unroll_length=250"], {"collector": {}}, None),
    (["collector.unroll_length=250"], {}, "the checkpoint has no collector state"),
    (["collector.unroll_length=250", "collector.env_backend=serial"], {"collector": {}},
     "collector.env_backend=serial has no runtime state to save"),
])
def test_resume_caveat_says_when_a_resume_cannot_repeat_the_run(overrides, saved, caveat):
    from torchrl_gorl.config_readers import resume_caveat

    said = resume_caveat(_compose("preset=smoke", *overrides), saved)
    assert said == caveat if caveat is None else caveat in said and "does not repeat the uninterrupted run" in said
