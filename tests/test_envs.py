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
