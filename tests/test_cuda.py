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


def _collect_and_update(device: torch.device):
    import utils_gorl as U

    from torchrl_gorl import make_gorl_policy

    cfg = _cfg(f"device={device}")
    torch.manual_seed(0)
    actor, critic, norm = U.make_encoder(cfg, 17, 6, device)
    policy = make_gorl_policy(actor, U.make_decoder(cfg, 17, 6, device, identity=True))
    collector = U.make_collector(cfg, "cheetah-run", policy, device)
    data = U.collect(collector, iter(collector), seed=3, device=device)
    collector.shutdown()
    ppo = U.PPOUpdate(cfg, actor, critic, U.resolve_gamma(cfg), device, norm)
    metrics = ppo.update(data.clone())
    return data, metrics, actor


def test_collection_with_the_policy_on_cuda_and_envs_on_cpu():
    data, _, _ = _collect_and_update(torch.device("cuda"))
    assert data.device.type == "cuda" and data.batch_size == torch.Size([2, 1000])
    assert torch.isfinite(data["action"]).all() and data["next", "truncated"][:, -1].all()


def test_ppo_update_on_cuda_matches_cpu():
    """Same seed, same envs: the rollout observations agree, and one PPO update lands on close weights."""
    cpu_data, cpu_metrics, cpu_actor = _collect_and_update(torch.device("cpu"))
    gpu_data, gpu_metrics, gpu_actor = _collect_and_update(torch.device("cuda"))
    torch.testing.assert_close(gpu_data["observation"][:, :50].cpu(), cpu_data["observation"][:, :50], atol=1e-4, rtol=1e-4)
    for (name, p_cpu), p_gpu in zip(cpu_actor.named_parameters(), gpu_actor.parameters()):
        torch.testing.assert_close(p_gpu.detach().cpu(), p_cpu.detach(), atol=5e-3, rtol=5e-2, msg=name)
    assert abs(gpu_metrics["train/loss_critic"] - cpu_metrics["train/loss_critic"]) < 0.1 * abs(cpu_metrics["train/loss_critic"]) + 1e-3
