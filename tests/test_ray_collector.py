"""collector.backend=ray: TorchRL's RayCollector with 2 local Ray workers gives the local collector's batches,
receives the weights and observation statistics after each update, is seeded per batch, shuts down the Ray it
started, and trains; bad Ray configs fail at start-up, naming the key."""
import copy
import json
import pathlib
import subprocess
import sys

import functools

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOTA = ROOT / "sota-implementations"
from torchrl_gorl import FlowDecoderModule, make_gorl_policy, make_latent_actor, ObservationNormalizer
from torchrl_gorl.collectors import collect_batch, make_collector
from torchrl_gorl.envs import make_env

CPU = torch.device("cpu")
TASK = "cheetah-run"
NEEDS_RAY = 'needs the [distributed] extra: pip install -e ".[distributed]"'


def test_batched_env_seed_chain_continues_into_the_next_worker():
    """Each worker's envs take the next seeds of the chain (as SerialEnv's), not a repeat of the previous worker's."""
    from torchrl_gorl.envs import make_env

    seeds = [make_env(TASK, 3, backend=backend).set_seed(5) for backend in ("batched", "serial")]
    assert seeds[0] == seeds[1]


# --------------------------------------------------------------------------- 2 local Ray workers
def _four_envs(policy, **kwargs):
    """One full episode of 4 cheetah-run envs per batch."""
    return make_collector(functools.partial(make_env, TASK, backend="batched"), policy, num_envs=4,
                          frames_per_batch=4000, **kwargs)


@pytest.fixture(scope="module")
def ray_run():
    """4 envs on 2 Ray workers (two each, so that the seed chain crosses workers), with a random (non-identity)
    decoder so that every part of the policy, and both observation normalisers, shape the actions."""
    pytest.importorskip("ray", reason=NEEDS_RAY)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the scripts: a tiny per-step policy on 2 threads crawls on 2 busy cores
    norm = ObservationNormalizer(17)  # cheetah-run: 17 observations, 6 actions
    actor = make_latent_actor(17, 6, num_cells=(32, 32), observation_norm=norm)
    decoder = FlowDecoderModule(17, 6, num_cells=(64, 64), num_steps=10)
    policy = make_gorl_policy(actor, decoder)
    collector = _four_envs(policy, num_workers=2, backend="ray")
    run = type("RayRun", (), dict(actor=actor, norm=norm, decoder=decoder, policy=policy,
                                  collector=collector, batches=iter(collector)))
    yield run
    collector.shutdown()
    torch.set_num_threads(threads)


def test_ray_batches_match_the_local_collectors_and_a_seed_fixes_them(ray_run):
    local = _four_envs(ray_run.policy)  # all envs in this process
    try:
        expected = collect_batch(local, iter(local), 11, CPU)
    finally:
        local.shutdown()
    data = collect_batch(ray_run.collector, ray_run.batches, 11, CPU)
    assert data.shape == expected.shape == (4, 1000)
    assert set(data.keys(True, True)) == set(expected.keys(True, True))
    for key in expected.keys(True, True):
        assert (data[key].shape, data[key].dtype) == (expected[key].shape, expected[key].dtype), key
    assert data["next", "done"][:, -1].all() and not data["next", "done"][:, :-1].any()  # one episode per env
    # collector.set_seed chains the seeds over the workers as over the envs of one batched env: each env starts
    # where the same env of the local collector does
    assert torch.equal(data["observation"][:, 0], expected["observation"][:, 0])
    # and seeds the workers' sampling too (SeededCollector): the same seed gives the same batch, although
    # this process's RNG has moved on and the workers' RNGs have drawn a whole batch since
    again = collect_batch(ray_run.collector, ray_run.batches, 11, CPU)
    for key in ("observation", "latent", "action", ("next", "reward")):
        assert torch.equal(data[key], again[key]), key


def test_weights_and_observation_statistics_reach_the_workers(ray_run):
    """A PPO update (parameters and the encoder's statistics) and a refit (the decoder's statistics), then
    ``update_policy_weights_()``: the next batch's latent parameters and actions are what the trainer's policy
    computes from the batch's observations and latents, and not what it computes with the old statistics."""
    run = ray_run
    old = copy.deepcopy(run.policy.state_dict())
    with torch.no_grad():
        for p in run.policy.parameters():
            p.add_(0.1 * torch.randn_like(p))
    run.norm.update(torch.randn(4000, run.norm.observation_dim) * 3 + 5)
    run.decoder.observation_norm.update(torch.randn(4000, run.norm.observation_dim) * 2 - 1)
    run.collector.update_policy_weights_()
    data = collect_batch(run.collector, run.batches, 5, CPU)

    def computed(policy):
        actor, decoder = policy.latent_actor, policy.decoder
        with torch.no_grad():
            td = actor(data.select("observation").clone())
            action = decoder.decode(data["observation"], data["latent"])
        return td["latent_loc"], td["latent_scale"], action

    for mine, theirs in zip(computed(run.policy), (data["latent_loc"], data["latent_scale"], data["action"])):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)
    # the check sees the statistics: new parameters with the old buffers give other latents and actions
    stale = copy.deepcopy(run.policy)
    buffers = dict(stale.named_buffers())
    assert any(name.endswith("observation_norm.loc") for name in buffers)
    stale.load_state_dict({k: old[k] if k in buffers else v for k, v in run.policy.state_dict().items()})
    for mine, theirs in zip(computed(stale), (data["latent_loc"], data["latent_scale"], data["action"])):
        assert not torch.allclose(mine, theirs, rtol=1e-3, atol=1e-3)


def test_shutdown_stops_the_ray_it_started(ray_run):
    import ray

    assert ray.is_initialized()
    ray_run.collector.shutdown()
    assert not ray.is_initialized()


def test_short_ray_training_run_completes(tmp_path):
    pytest.importorskip("ray", reason=NEEDS_RAY)
    # the smoke run's two stages with one PPO iteration each, one evaluation before it and a 2-step decoder:
    # Ray's start-up (about 30 s here) already doubles the run
    cmd = [sys.executable, str(SOTA / "gorl_ppo.py"), "preset=smoke", "collector.backend=ray",
           "collector.num_workers=2", "schedule.stage_frames=[2000,2000]", "eval.num_evals=1", "decoder.num_steps=2",
           f"hydra.run.dir={tmp_path}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    # 2 stages x 1 iteration x (2 envs x 1000 steps), plus one PPO iteration's worth of decoder data
    assert summary["frames_encoder"] == 4000 and summary["frames_decoder_data"] == 2000
    assert summary["frames_total"] == 6000
    assert summary["frames_eval"] == 5 * 2000  # 2 evaluations per stage + the final one
    assert len(summary["refits"]) == 1 and summary["refits"][0]["rows"] == 2000
