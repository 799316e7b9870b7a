"""The training pieces on a CUDA device (skipped without one; `benchmarks/gpu_check.py` runs them on a GPU machine):
dm_control envs on the CPU feeding a GoRL policy on the GPU, and the PPO update on the GPU matching the CPU's."""
import pathlib
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sota-implementations"))

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _cfg(*overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "sota-implementations" / "config"), version_base="1.3"):
        return compose(config_name="gorl_ppo", overrides=["preset=smoke", *overrides])


def _setup(device: torch.device):
    import utils_gorl as U

    from torchrl_gorl import make_gorl_policy

    cfg = _cfg(f"device={device}")
    torch.manual_seed(0)
    actor, critic, norm = U.make_encoder(cfg, 17, 6, device)
    policy = make_gorl_policy(actor, U.make_decoder(cfg, 17, 6, device, identity=True))
    return U, cfg, actor, critic, norm, policy


def test_collection_with_the_policy_on_cuda_and_envs_on_cpu():
    U, cfg, _, _, _, policy = _setup(torch.device("cuda"))
    collector = U.make_collector(cfg, "cheetah-run", policy, torch.device("cuda"))
    data = U.collect(collector, iter(collector), seed=3, device=torch.device("cuda"))
    collector.shutdown()
    assert data.device.type == "cuda" and data.batch_size == torch.Size([2, 1000])
    assert torch.isfinite(data["action"]).all() and data["next", "truncated"][:, -1].all()
    assert not data["next", "truncated"][:, :-1].any()


def test_ppo_update_on_cuda_matches_cpu():
    """One CPU batch, the same initial weights: a PPO update (GAE, clipped loss, Adam) lands on close weights on
    both devices. (The data is collected once: CPU and CUDA draw different random numbers from one seed.)"""
    U, cfg, actor, critic, norm, policy = _setup(torch.device("cpu"))
    collector = U.make_collector(cfg, "cheetah-run", policy, torch.device("cpu"))
    data = U.collect(collector, iter(collector), seed=3, device=torch.device("cpu"))
    collector.shutdown()
    results = {}
    for device in (torch.device("cpu"), torch.device("cuda")):
        U, cfg, actor, critic, norm, _ = _setup(device)
        metrics = U.make_ppo_update(cfg, actor, critic, U.resolve_gamma(cfg), device, norm).update(data.clone().to(device))
        results[device.type] = metrics, {k: v.detach().cpu() for k, v in actor.state_dict().items()}
    (cpu_metrics, cpu_actor), (gpu_metrics, gpu_actor) = results["cpu"], results["cuda"]
    for name, value in cpu_actor.items():
        torch.testing.assert_close(gpu_actor[name], value, atol=1e-3, rtol=1e-2, msg=name)
    assert gpu_metrics["train/loss_critic"] == pytest.approx(cpu_metrics["train/loss_critic"], rel=1e-2, abs=1e-4)
