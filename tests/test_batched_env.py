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


@pytest.mark.parametrize("task", ["cheetah-run", "finger-turn_hard"])  # finger-turn moves its target (model) at reset
def test_runtime_state_continues_bit_identically_in_a_rebuilt_env(task):
    env = BatchedDMControlEnv(task, 2, seed=0)
    actions = [env.action_spec.rand() for _ in range(1100)]
    _steps(env, actions[:600])
    state = env.runtime_state()
    expected = _steps(env, actions[600:])  # through the time limit, a reset and 100 steps of a new episode
    other = BatchedDMControlEnv(task, 2, seed=7)
    _steps(other, actions[:50])
    other.load_runtime_state(state)
    assert torch.equal(_steps(other, actions[600:]), expected)
    assert state["envs"].numel() < 10_000  # a few kB per env, not the 12 MB of a pickled MjData
    with pytest.raises(ValueError, match="the runtime state holds 2 envs, this BatchedDMControlEnv has 3"):
        BatchedDMControlEnv(task, 3).load_runtime_state(state)
