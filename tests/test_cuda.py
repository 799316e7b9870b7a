"""The training pieces on a CUDA device (skipped without one; `benchmarks/gpu_check.py` runs them on a GPU machine):
dm_control envs on the CPU feeding a GoRL policy on the GPU, and the PPO update on the GPU matching the CPU's."""
import functools

import pytest
import torch

from torchrl_gorl import (FlowDecoderModule, make_gorl_policy, make_latent_actor, make_latent_ppo_loss,
                          make_value_network, ObservationNormalizer)
from torchrl_gorl.collectors import collect_batch, make_collector
from torchrl_gorl.envs import make_env
from torchrl_gorl.training import PPOUpdate

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _setup(device: torch.device):
    """The smoke preset's models for cheetah-run (17 observations, 6 actions), the decoder at the identity."""
    torch.manual_seed(0)
    norm = ObservationNormalizer(17).to(device)
    actor = make_latent_actor(17, 6, num_cells=(32,) * 4, observation_norm=norm, device=device)
    critic = make_value_network(17, num_cells=(64, 64), observation_norm=norm, device=device)
    decoder = FlowDecoderModule(17, 6, num_cells=(32, 32), device=device).reset_to_identity()
    return actor, critic, norm, make_gorl_policy(actor, decoder)


def _two_envs(policy, device: torch.device):
    """One full episode of 2 cheetah-run envs (on the CPU) per batch, stored on ``device``."""
    return make_collector(functools.partial(make_env, "cheetah-run", backend="batched"), policy, num_envs=2,
                          frames_per_batch=2000, device=device)


def test_collection_with_the_policy_on_cuda_and_envs_on_cpu():
    *_, policy = _setup(torch.device("cuda"))
    collector = _two_envs(policy, torch.device("cuda"))
    data = collect_batch(collector, iter(collector), seed=3, device=torch.device("cuda"))
    collector.shutdown()
    assert data.device.type == "cuda" and data.batch_size == torch.Size([2, 1000])
    assert torch.isfinite(data["action"]).all() and data["next", "truncated"][:, -1].all()
    assert not data["next", "truncated"][:, :-1].any()


def test_ppo_update_on_cuda_matches_cpu():
    """One CPU batch, the same initial weights: a PPO update (GAE, clipped loss, Adam) lands on close weights on
    both devices. (The data is collected once: CPU and CUDA draw different random numbers from one seed.)"""
    *_, policy = _setup(torch.device("cpu"))
    collector = _two_envs(policy, torch.device("cpu"))
    data = collect_batch(collector, iter(collector), seed=3, device=torch.device("cpu"))
    collector.shutdown()
    results = {}
    for device in (torch.device("cpu"), torch.device("cuda")):
        actor, critic, norm, _ = _setup(device)
        loss = make_latent_ppo_loss(actor, critic, clip_epsilon=0.15, entropy_coeff=0.0, normalize_advantage=True)
        ppo = PPOUpdate(actor, critic, loss, gamma=0.995, epochs=2, minibatch_size=500, reward_scale=10.0,
                        observation_norm=norm, device=device)
        metrics = ppo.update(data.clone().to(device))
        results[device.type] = metrics, {k: v.detach().cpu() for k, v in actor.state_dict().items()}
    (cpu_metrics, cpu_actor), (gpu_metrics, gpu_actor) = results["cpu"], results["cuda"]
    for name, value in cpu_actor.items():
        torch.testing.assert_close(gpu_actor[name], value, atol=1e-3, rtol=1e-2, msg=name)
    assert gpu_metrics["train/loss_critic"] == pytest.approx(cpu_metrics["train/loss_critic"], rel=1e-2, abs=1e-4)
