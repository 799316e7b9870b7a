"""TanhActionTransform on a real dm_control env: the env gets tanh(a), the rollout keeps a."""
import pytest
import torch
from torchrl.collectors import Collector
from torchrl.data import Bounded, Unbounded
from torchrl.envs import CatTensors, Compose, DMControlEnv, DoubleToFloat, InitTracker, TransformedEnv
from torchrl.envs.transforms import ActionScaling
from torchrl.testing.mocking_classes import ContinuousActionVecMockEnv

from torchrl_gorl import FlowDecoderModule, make_gorl_policy, make_latent_actor, TanhActionTransform


def _cheetah(squash: bool):
    base = DMControlEnv("cheetah", "run")
    transforms = [CatTensors(list(base.observation_spec.keys()), "observation"), DoubleToFloat(), InitTracker()]
    if squash:
        transforms.append(TanhActionTransform())
    return TransformedEnv(base, Compose(*transforms))


def test_env_receives_tanh_and_rollout_keeps_pre_squash_action():
    squashed, plain = _cheetah(True), _cheetah(False)
    assert isinstance(squashed.action_spec, Unbounded)
    squashed.set_seed(0)
    plain.set_seed(0)
    td_s, td_p = squashed.reset(), plain.reset()
    torch.testing.assert_close(td_s["observation"], td_p["observation"])
    for _ in range(20):
        action = 3 * torch.randn(6)
        td_s = squashed.step(td_s.set("action", action))
        td_p = plain.step(td_p.set("action", action.tanh()))
        assert torch.equal(td_s["action"], action)  # the pre-squash action is what the rollout stores
        torch.testing.assert_close(td_s["next", "observation"], td_p["next", "observation"])
        torch.testing.assert_close(td_s["next", "reward"], td_p["next", "reward"])
        td_s, td_p = td_s["next"].clone(), td_p["next"].clone()


def test_collector_stores_pre_squash_actions():
    env = _cheetah(True)
    obs_dim = env.observation_spec["observation"].shape[-1]
    decoder = FlowDecoderModule.identity(obs_dim, 6)
    actor = make_latent_actor(obs_dim, 6, scale_min=3.0, scale_max=10.0)  # wide latent: |a| > 1 often
    collector = Collector(env, make_gorl_policy(actor, decoder), frames_per_batch=50, total_frames=50)
    data = next(iter(collector))
    collector.shutdown()
    assert torch.equal(data["action"], data["latent"])
    assert data["action"].abs().max() > 1


def test_tanh_transform_rejects_non_unit_bounds():
    env = TransformedEnv(ContinuousActionVecMockEnv(action_spec=Bounded(low=-2.0, high=4.0, shape=(7,))))
    with pytest.raises(ValueError, match="ActionScaling"):
        env.append_transform(TanhActionTransform())
        env.action_spec
    rescaled = TransformedEnv(
        ContinuousActionVecMockEnv(action_spec=Bounded(low=-2.0, high=4.0, shape=(7,))),
        Compose(ActionScaling(), TanhActionTransform()),
    )
    assert isinstance(rescaled.action_spec, Unbounded)
    rescaled.rollout(3, policy=lambda td: td.set("action", 5 * torch.randn(7)))


def test_building_envs_without_a_display_prints_no_renderer_or_mjcf_warnings():
    """A fresh process with neither a display nor MUJOCO_GL (a plain server or CI): building and stepping the
    batched envs, in this process and in a collector worker, prints nothing."""
    import os
    import subprocess
    import sys

    code = (
        "import functools\n"
        "from torchrl.collectors import Collector\n"
        "from torchrl_gorl.envs import make_env\n"
        "make_env('cheetah-run', 2).rollout(2)\n"
        "c = Collector([functools.partial(make_env, 'cheetah-run', 2)], None, num_collectors=1, sync=True,\n"
        "              frames_per_batch=4, total_frames=4)\n"
        "next(iter(c)); c.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY", "PYTHONWARNINGS")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for noise in ("GLFW", "DISPLAY", "settotalmass", "deprecated"):
        assert noise not in proc.stderr, proc.stderr[-2000:]
