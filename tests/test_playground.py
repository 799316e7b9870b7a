"""``env.backend=playground``: MuJoCo Playground's dm_control-suite ports behind GoRL's env contract.

The names, the config checks and the missing-extra errors run on the README's install; what builds an env or
touches JAX needs the ``[playground]`` extra and skips without it.

The shared env uses MJX (``impl="jax"``, what ``"auto"`` picks on CPU): a ~1 min compile, then full 1000-step
episodes in seconds. JAX's persistent compilation cache (a per-module folder) lets the slow end-to-end run reuse
that compile.
"""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from tensordict.nn import TensorDictModule
from torchrl.envs import RewardSum, StepCounter

from torchrl_gorl.envs import (
    EPISODE_LENGTH,
    make_playground_env,
    PAPER_TASKS,
    PLAYGROUND_TASKS,
)
from torchrl_gorl.configs import validate_config
from torchrl_gorl.envs.playground import INSTALL_HINT, playground_available
from torchrl_gorl.training import evaluate_policy

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOTA = ROOT / "sota-implementations"

needs_playground = pytest.mark.skipif(not playground_available(), reason=f"needs the [playground] extra: {INSTALL_HINT}")


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory) -> pathlib.Path:
    pytest.importorskip("mujoco_playground", reason=f"needs the [playground] extra: {INSTALL_HINT}")
    import jax

    path = tmp_path_factory.mktemp("jax_cache")
    jax.config.update("jax_compilation_cache_dir", str(path))
    return path


@pytest.fixture(scope="module")
def env(jax_cache):
    env = make_playground_env("CheetahRun", 2, impl="jax", seed=0)
    yield env
    env.close()


def _zero_policy(act_dim: int) -> TensorDictModule:
    return TensorDictModule(lambda obs: torch.zeros(*obs.shape[:-1], act_dim), ["observation"], ["action"])


# --------------------------------------------------------------------------- names
@needs_playground
def test_task_table_is_the_installed_playground_suite():
    from dm_control import suite
    from mujoco_playground import dm_control_suite

    assert set(PLAYGROUND_TASKS) == set(dm_control_suite.ALL_ENVS)
    assert set(PLAYGROUND_TASKS.values()) <= set(suite.ALL_TASKS)
    assert all(PLAYGROUND_TASKS[name] == pair for name, pair in PAPER_TASKS.items())
    for name in PAPER_TASKS:  # the paper's protocol: 1000 control steps, no action repeat
        config = dm_control_suite.get_default_config(name)
        assert config.episode_length == EPISODE_LENGTH and config.action_repeat == 1


@pytest.mark.parametrize("name", ["CheetahWalk", "quadruped-walk", "Go1JoystickFlatTerrain"])
def test_unknown_task_lists_the_accepted_names(name):
    with pytest.raises(ValueError, match=rf"unknown MuJoCo Playground task '{name}'.*accepted names: .*CheetahRun"):
        make_playground_env(name, 2)


def test_package_imports_no_jax():
    code = ("import sys, torchrl_gorl, torchrl_gorl.envs; "
            "print(sorted({'jax', 'mujoco_playground', 'warp'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def _hide_playground(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mujoco_playground" else find_spec(name, *a))


def test_missing_extra_names_the_fix(monkeypatch):
    _hide_playground(monkeypatch)
    with pytest.raises(ModuleNotFoundError, match=r'pip install -e "\.\[playground\]"'):
        make_playground_env("CheetahRun", 2)
    with pytest.raises(ValueError, match="impl must be one of"):  # bad input is named before the install
        make_playground_env("CheetahRun", 2, impl="mjx")


# --------------------------------------------------------------------------- config
def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(SOTA / "config"), version_base="1.3"):
        return compose(config_name="gorl_ppo", overrides=["preset=smoke", *overrides])


# --------------------------------------------------------------------------- the env
def test_specs_match_the_dm_control_contract(env):
    assert env.batch_size == torch.Size([2])
    obs = env.observation_spec["observation"]
    assert obs.shape == torch.Size([2, 17]) and obs.dtype == torch.float32  # CheetahRun: qpos[1:] and qvel
    assert env.action_spec.shape == torch.Size([2, 6]) and type(env.action_spec).__name__ == "UnboundedContinuous"
    base = env.base_env.action_spec  # tanh squashes into the env's [-1, 1] box
    assert torch.all(base.space.low == -1) and torch.all(base.space.high == 1)
    assert set(env.full_done_spec.keys()) == {"done", "terminated", "truncated"}
    assert env.reward_spec.shape == torch.Size([2, 1]) and env.reward_spec.dtype == torch.float32
    assert {"is_init", "step_count", "episode_reward"} <= set(env.observation_spec.keys())
    counter = next(t for t in env.transform if isinstance(t, StepCounter))
    assert counter.max_steps == EPISODE_LENGTH == 1000
    assert any(isinstance(t, RewardSum) for t in env.transform)


def test_episodes_are_truncated_at_exactly_1000_steps(env):
    env.set_seed(0)
    rollout = env.rollout(EPISODE_LENGTH + 2, break_when_any_done=False)
    nxt = rollout["next"]
    truncated, terminated, done = nxt["truncated"].squeeze(-1), nxt["terminated"].squeeze(-1), nxt["done"].squeeze(-1)
    assert truncated[:, EPISODE_LENGTH - 1].all() and truncated.sum() == 2  # at step 1000 only
    assert not terminated.any() and torch.equal(done, truncated)
    assert torch.equal(nxt["step_count"][:, EPISODE_LENGTH - 1].squeeze(-1), torch.full((2,), EPISODE_LENGTH))
    # one reset at the start and one after the time limit: no reset in between
    is_init = rollout["is_init"].squeeze(-1)
    assert is_init[:, 0].all() and is_init[:, EPISODE_LENGTH].all() and is_init.sum() == 4
    assert torch.equal(rollout["step_count"][:, EPISODE_LENGTH].squeeze(-1), torch.zeros(2, dtype=torch.long))
    # rewards are dm_control's per-step [0, 1]; the episode sum is counted once and restarts after the reset
    reward = nxt["reward"].squeeze(-1)
    assert reward.min() >= 0 and reward.max() <= 1 and torch.isfinite(nxt["observation"]).all()
    first = reward[:, :EPISODE_LENGTH].sum(-1)
    torch.testing.assert_close(nxt["episode_reward"][:, EPISODE_LENGTH - 1].squeeze(-1), first)
    torch.testing.assert_close(nxt["episode_reward"][:, -1].squeeze(-1), reward[:, EPISODE_LENGTH:].sum(-1))


def test_set_seed_makes_episodes_reproducible(env):
    policy = _zero_policy(6)
    runs = []
    for seed in (3, 3, 4):
        env.set_seed(seed)
        runs.append(env.rollout(5, policy))
    assert torch.equal(runs[0]["next", "observation"], runs[1]["next", "observation"])
    assert torch.equal(runs[0]["next", "reward"], runs[1]["next", "reward"])
    assert not torch.equal(runs[0]["observation"][:, 0], runs[2]["observation"][:, 0])
    assert not torch.equal(runs[0]["observation"][0, 0], runs[0]["observation"][1, 0])  # envs start apart


def test_a_partial_reset_leaves_the_other_envs_running(env):
    actions = torch.linspace(-1, 1, 4 * 2 * 6).reshape(4, 2, 6)

    def run(reset_env0_before_last: bool):
        env.set_seed(5)
        td = env.reset()
        for t in range(4):
            if t == 3 and reset_env0_before_last:
                before = td["observation"].clone()
                td["_reset"] = torch.tensor([[True], [False]])
                td = env.reset(td)
                assert torch.equal(td["observation"][1], before[1]) and not torch.equal(td["observation"][0], before[0])
                assert td["step_count"].squeeze(-1).tolist() == [0, 3]
            td["action"] = actions[t]
            td = env.step(td)["next"].exclude("reward", "done", "terminated", "truncated")
        return td["observation"]

    full, partial = run(False), run(True)
    torch.testing.assert_close(partial[1], full[1], rtol=0, atol=0)  # env 1 never noticed
    assert not torch.equal(partial[0], full[0])


def test_evaluate_policy_runs_full_deterministic_episodes(env):
    result = evaluate_policy(env, _zero_policy(6), num_episodes=2, seed=7)
    assert result["num_episodes"] == 2 and result["frames"] == 2 * EPISODE_LENGTH
    assert 0 <= result["return_min"] <= result["return_max"] <= EPISODE_LENGTH


# --------------------------------------------------------------------------- slow
@pytest.mark.slow
@needs_playground
def test_warp_physics_steps_the_same_contract():
    warp = make_playground_env("cheetah-run", 2, impl="warp", seed=0, max_steps=3)
    rollout = warp.rollout(4, break_when_any_done=False)
    assert rollout["next", "observation"].shape == torch.Size([2, 4, 17])
    assert rollout["next", "truncated"].squeeze(-1)[:, 2].all() and rollout["is_init"].squeeze(-1)[:, 3].all()
    warp.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
@needs_playground
def test_cuda_device_puts_the_tensors_on_the_gpu():
    cuda = make_playground_env("CheetahRun", 4, device="cuda", seed=0)
    rollout = cuda.rollout(5, _zero_policy(6).to("cuda"))
    assert rollout.device.type == "cuda" and rollout["next", "reward"].device.type == "cuda"


@pytest.mark.slow
def test_gorl_trains_on_playground(tmp_path, jax_cache):
    cmd = [sys.executable, str(SOTA / "gorl_ppo.py"), "preset=smoke", "env.backend=playground", "env.task=CheetahRun",
           f"hydra.run.dir={tmp_path}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                            env={**os.environ, "JAX_COMPILATION_CACHE_DIR": str(jax_cache)})
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    # as the dm_control smoke run: 2 stages x 2 iterations x (2 envs x 1000 steps) + one iteration of decoder data
    assert summary["task"] == "cheetah-run"
    assert summary["frames_encoder"] == 8000 and summary["frames_decoder_data"] == 2000
    assert summary["frames_eval"] == 7 * 2000
    assert len(summary["refits"]) == 1 and summary["refits"][0]["rows"] == 2000
    assert 0 <= summary["final_return"] <= EPISODE_LENGTH


@needs_playground
@pytest.mark.parametrize("backend,has_warp,expected", [("cpu", True, "jax"), ("gpu", True, "warp"), ("gpu", False, "jax")])
def test_auto_impl_is_warp_only_on_a_jax_gpu_with_warp_installed(monkeypatch, backend, has_warp, expected):
    import jax

    from torchrl_gorl.envs.playground import resolve_impl

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (find_spec(name, *a) if name != "warp" or has_warp else None))
    assert resolve_impl("auto") == expected
    assert resolve_impl("jax") == "jax" and resolve_impl("warp") == "warp"
    with pytest.raises(ValueError, match="impl must be one of"):
        resolve_impl("mjx")


@needs_playground
def test_jax_gpu_preallocation_is_off_before_jax_starts(monkeypatch):
    """JAX reads XLA_PYTHON_CLIENT_PREALLOCATE once, when its backend starts (resolve_impl's first question): it must
    be set by then, or JAX takes 75% of a GPU from torch and from the other processes' JAX."""
    from torchrl_gorl.envs import playground

    seen = {}

    def first_jax_call(impl):
        seen["value"] = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")
        raise RuntimeError("stop here")

    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    monkeypatch.setattr(playground, "resolve_impl", first_jax_call)
    with pytest.raises(RuntimeError, match="stop here"):
        make_playground_env("CheetahRun", 1)
    assert seen["value"] == "false"


@needs_playground
def test_warp_impl_without_warp_names_the_key(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "warp" else find_spec(name, *a))
    cfg = _compose("env.backend=playground", "env.playground_impl=warp")
    with pytest.raises(ValueError, match=r"config key env.playground_impl=warp needs MuJoCo Warp"):
        validate_config(cfg)
    with pytest.raises(ModuleNotFoundError, match="impl='warp' needs MuJoCo Warp"):
        make_playground_env("CheetahRun", 1, impl="warp")
