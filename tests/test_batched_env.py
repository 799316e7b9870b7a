"""BatchedDMControlEnv: same values as DMControlEnv, partial resets, seeding, collectors, errors."""
import pytest
import torch
from torchrl.envs import CatTensors, Compose, DMControlEnv, DoubleToFloat, TransformedEnv
from torchrl._utils import seed_generator
from torchrl.envs.utils import check_env_specs

from torchrl_gorl.envs import BatchedDMControlEnv, make_env

KEYS = ["observation", "reward", "done", "terminated", "truncated"]


def _reference(domain, task, seed):
    base = DMControlEnv(domain, task)
    env = TransformedEnv(base, Compose(CatTensors(sorted(base.observation_spec.keys()), "observation"), DoubleToFloat()))
    env.set_seed(seed)
    return env


@pytest.mark.parametrize("task", ["walker-walk", "ball_in_cup-catch"])
def test_same_values_as_dmcontrolenv_over_a_full_episode_and_a_reset(task):
    domain, name = task.split("-")
    check_env_specs(BatchedDMControlEnv(task, 2))  # its rollout would advance a seeded env
    env = BatchedDMControlEnv(task, 2, seed=7)
    refs = [_reference(domain, name, seed) for seed in (7, seed_generator(7))]  # TorchRL's seed chain
    assert env.observation_spec["observation"].shape[-1] == refs[0].observation_spec["observation"].shape[-1]
    td, ref_td = env.reset(), [r.reset() for r in refs]
    generator = torch.Generator().manual_seed(0)
    truncations = 0
    for _ in range(1050):
        action = torch.rand(2, env.action_dim, generator=generator) * 2 - 1
        td = env.step(td.set("action", action))
        ref_td = [r.step(t.set("action", action[i])) for i, (r, t) in enumerate(zip(refs, ref_td))]
        for i in range(2):
            for key in KEYS:
                assert torch.equal(td["next", key][i], ref_td[i]["next", key]), key
        if td["next", "done"].any():  # the time limit: truncation, not termination
            assert td["next", "truncated"].all() and not td["next", "terminated"].any()
            truncations += 1
            td, ref_td = env.reset(), [r.reset() for r in refs]
        else:
            td, ref_td = td["next"].clone(), [t["next"].clone() for t in ref_td]
    assert truncations == 1


def test_batched_and_standard_backends_give_the_same_episodes():
    batched, serial = make_env("cheetah-run", 3, backend="batched", seed=3), make_env("cheetah-run", 3, backend="serial", seed=3)
    td_b, td_s = batched.reset(), serial.reset()
    assert torch.equal(td_b["observation"], td_s["observation"])
    generator = torch.Generator().manual_seed(1)
    for _ in range(20):
        action = 2 * torch.randn(3, 6, generator=generator)
        td_b, td_s = batched.step(td_b.set("action", action)), serial.step(td_s.set("action", action))
        for key in ("observation", "reward", "done", "episode_reward", "step_count"):
            assert torch.equal(td_b["next", key], td_s["next", key]), key
        td_b, td_s = td_b["next"].clone(), td_s["next"].clone()
    serial.close()


def test_partial_reset_and_seeding():
    env = BatchedDMControlEnv("cheetah-run", 3, seed=1)
    td = env.reset()
    for _ in range(5):
        td = env.step(td.set("action", torch.ones(3, 6)))["next"]
    moved = td["observation"].clone()
    reset = env.reset(td.set("_reset", torch.tensor([[False], [True], [False]])))
    assert torch.equal(reset["observation"][[0, 2]], moved[[0, 2]])  # untouched
    assert not torch.equal(reset["observation"][1], moved[1])
    # same seed, same initial states; another seed, others
    first = BatchedDMControlEnv("cheetah-run", 3, seed=1).reset()["observation"]
    again = BatchedDMControlEnv("cheetah-run", 3, seed=1).reset()["observation"]
    other = BatchedDMControlEnv("cheetah-run", 3, seed=2).reset()["observation"]
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_errors():
    with pytest.raises(ValueError, match="unknown task 'cheetah-walk'"):
        BatchedDMControlEnv("cheetah-walk", 2)
    with pytest.raises(ValueError, match="num_envs must be a positive integer, got 0"):
        BatchedDMControlEnv("cheetah-run", 0)
    env = BatchedDMControlEnv("cheetah-run", 2)
    td = env.reset()
    with pytest.raises(ValueError, match=r"expects an action of shape \(2, 6\), got \(2, 5\)"):
        env.step(td.set("action", torch.zeros(2, 5)))
    with pytest.raises(ValueError, match="backend must be one of"):
        make_env("cheetah-run", 2, backend="gpu")


def _steps(env, actions):
    """Observations and rewards of ``actions``, done envs reset (as a collector does)."""
    from tensordict import TensorDict

    out = []
    for action in actions:
        td = env.step(TensorDict(action=action, batch_size=env.batch_size))
        if td["next", "done"].any():
            env.reset(TensorDict(_reset=td["next", "done"], batch_size=env.batch_size))
        out.append(torch.cat([td["next", "observation"], td["next", "reward"]], -1))
    return torch.stack(out)


def _round_trip(state, path):
    """``state`` through ``torch.save`` and a ``weights_only`` load: arrays only, nothing that could run code."""
    torch.save(state, path)
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("task", ["cheetah-run", "finger-turn_hard"])  # finger-turn moves its target (model) at reset
def test_runtime_state_continues_bit_identically_in_a_rebuilt_env(task, tmp_path):
    env = BatchedDMControlEnv(task, 2, seed=0)
    env.set_episode_progress([0, 700])  # staggered: env 1 hits the time limit at step 300 and resets alone
    actions = [env.action_spec.rand() for _ in range(1050)]
    _steps(env, actions[:450])  # env 0 450 steps into its first episode, env 1 150 into its second
    state = env.runtime_state()
    assert [env._step_count for env in env._envs] == [450, 150] == state["step_count"].tolist()
    expected = _steps(env, actions[450:])  # env 0 through the time limit (a partial reset) and on
    other = BatchedDMControlEnv(task, 2, seed=7)
    _steps(other, actions[:50])
    other.load_runtime_state(_round_trip(state, tmp_path / "state.pt"))
    assert torch.equal(_steps(other, actions[450:]), expected)
    assert other.runtime_state().keys() == env.runtime_state().keys()
    if task == "finger-turn_hard":  # each env's target, restored into an env whose reset put it elsewhere
        assert state["model/site_pos"].shape == (2, *env._pristine_model["site_pos"].shape)
        assert not torch.equal(state["model/site_pos"][0], state["model/site_pos"][1])
    else:
        assert not any(key.startswith("model/") for key in state)  # cheetah's reset leaves its model alone


def test_runtime_state_holds_only_arrays(tmp_path):
    env = BatchedDMControlEnv("finger-turn_hard", 3, seed=0)
    _steps(env, [env.action_spec.rand() for _ in range(20)])
    state = env.runtime_state()
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) and v.shape[0] == 3 for v in state.values())
    assert {"physics", "random_key", "random_pos", "random_has_gauss", "random_cached_gaussian", "step_count",
            "reset_next_step", "observation"} <= state.keys()
    assert state["physics"].dtype == torch.float64 and state["random_key"].shape == (3, 624)
    loaded = _round_trip(state, tmp_path / "state.pt")
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], v) for k, v in state.items())
    assert all(v.numel() * v.element_size() < 3 * 6_000 for v in state.values())  # kB an env, not a pickled MjData


def _corrupt(state, key, value):
    return {**state, key: value}


def test_a_bad_runtime_state_is_refused_before_any_env_changes():
    env, twin = BatchedDMControlEnv("finger-turn_hard", 2, seed=0), BatchedDMControlEnv("finger-turn_hard", 2, seed=0)
    source = BatchedDMControlEnv("finger-turn_hard", 2, seed=5)
    actions = [env.action_spec.rand() for _ in range(100)]
    _steps(env, actions[:30]), _steps(twin, actions[:30]), _steps(source, actions[:60])
    good = source.runtime_state()
    three = BatchedDMControlEnv("finger-turn_hard", 3, seed=1).runtime_state()
    bad_random = good["random_key"].clone()
    bad_random[1, 0] = 2**32  # env 1's: checked after everything else, so a partial load would show in env 0
    cases = [
        (three, r"key 'physics' holds 3 envs, BatchedDMControlEnv\('finger-turn_hard', num_envs=2\) has 2"),
        (_corrupt(good, "physics", good["physics"][:, :-1]), r"key 'physics' has shape \(2, 38\).*expects \(2, 39\)"),
        (_corrupt(good, "model/not_a_field", torch.zeros(2, 3)), "key 'model/not_a_field'.*has no field 'not_a_field'"),
        (_corrupt(good, "model/site_pos", good["model/site_pos"][:, :2]), "key 'model/site_pos' has shape"),
        (_corrupt(good, "step_count", good["step_count"].float()), "key 'step_count' has dtype torch.float32"),
        (_corrupt(good, "envs", torch.zeros(10, dtype=torch.uint8)), "key 'envs'.*old pickled format"),
        ({k: v for k, v in good.items() if k != "random_pos"}, "key 'random_pos' is missing"),
        (_corrupt(good, "random_key", bad_random), "key 'random_key'.*uint32"),
    ]
    for state, message in cases:
        with pytest.raises(ValueError, match=message):
            env.load_runtime_state(state)
    assert torch.equal(_steps(env, actions[30:]), _steps(twin, actions[30:]))  # as if nothing had been tried
