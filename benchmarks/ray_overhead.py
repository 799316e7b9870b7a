"""What ``collector.backend=ray`` costs against the local multi-process collector, measured in one run.

For each task, the GoRL policy (latent actor 4x32 + 10-step flow decoder 4x64, random weights, observation
statistics) collects full-episode batches (``num_envs`` x 1000 steps, as in training) with 2 workers x k
``BatchedDMControlEnv``, built by the training code (``utils_gorl.make_collector``):

(a) ``collector.backend=local``: TorchRL's ``MultiSyncCollector``, 2 worker processes;
(b) ``collector.backend=ray``: TorchRL's ``RayCollector``, 2 Ray actors on a Ray started by the collector.

Each timed iteration is what a training iteration does around the PPO update: ``collect`` (reseed the
workers, one batch) and ``update_policy_weights_()`` (parameters and observation statistics to every worker).
Start-up is the time from ``make_collector`` to a collector ready to collect (for Ray: start Ray, build the
actors, join the weight-sync group), plus the first (warm-up) batch, which is not timed.

    python benchmarks/ray_overhead.py                          # cheetah-run and walker-walk, 2 workers x 64 envs
    python benchmarks/ray_overhead.py --envs-per-worker 4 64   # also the CPU preset's 8 envs (2 x 4)

The last line printed is one JSON object with every number.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys
import time
import warnings

import torch
from torchrl_gorl.collectors import collect_batch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sota-implementations"))


def measure(task: str, backend: str, envs_per_worker: int, batches: int) -> dict:
    from hydra import compose, initialize_config_dir

    import utils_gorl as U
    from torchrl_gorl import make_gorl_policy

    workers = 2
    overrides = ["preset=cpu", f"env.task={task}", f"collector.num_envs={workers * envs_per_worker}",
                 f"collector.num_workers={workers}", f"collector.backend={backend}"]
    with initialize_config_dir(config_dir=str(ROOT / "sota-implementations" / "config"), version_base="1.3"):
        cfg = compose(config_name="gorl_ppo", overrides=overrides)
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    obs_dim, act_dim = U.env_dims(cfg, task)
    actor, _, norm = U.make_encoder(cfg, obs_dim, act_dim, cpu)
    norm.update(torch.randn(1000, obs_dim))
    policy = make_gorl_policy(actor, U.make_decoder(cfg, obs_dim, act_dim, cpu))  # random: the full 10 steps

    start = time.perf_counter()
    collector = U.make_collector(cfg, task, policy, cpu)
    ready = time.perf_counter() - start
    batches_it = iter(collector)
    collect_batch(collector, batches_it, 0, cpu)  # warm-up: first resets, lazy initialisation
    first = time.perf_counter() - start
    frames, sync, start = 0, 0.0, time.perf_counter()
    for i in range(1, batches + 1):
        frames += collect_batch(collector, batches_it, i, cpu).numel()
        t = time.perf_counter()
        collector.update_policy_weights_()
        sync += time.perf_counter() - t
    elapsed = time.perf_counter() - start
    collector.shutdown()
    return {"task": task, "backend": backend, "envs": f"{workers} x {envs_per_worker}", "frames": frames,
            "fps": frames / elapsed, "sync_s": sync / batches, "ready_s": ready, "ready_and_first_batch_s": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["cheetah-run", "walker-walk"])
    parser.add_argument("--envs-per-worker", nargs="+", type=int, default=[64], help="k: envs per worker")
    parser.add_argument("--batches", type=int, default=2, help="timed full-episode batches per configuration")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    load_before = os.getloadavg()
    rows = []
    for task in args.tasks:
        for k in args.envs_per_worker:
            for backend in ("local", "ray"):
                rows.append(measure(task, backend, k, args.batches))
                r = rows[-1]
                print(f"{task:<13}{r['envs']:>9}  {backend:<6}{r['fps']:>9.0f} env steps/s   weight sync "
                      f"{r['sync_s'] * 1e3:>6.1f} ms   ready {r['ready_s']:>5.1f} s   +1st batch "
                      f"{r['ready_and_first_batch_s']:>5.1f} s", flush=True)
    ratios = {}
    print(f"\nRay / MultiSyncCollector, collection + weight sync ({os.cpu_count()} cores, load average "
          f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after):")
    for local, ray in zip(rows[::2], rows[1::2]):
        key = f"{local['task']} {local['envs']}"
        ratios[key] = ray["fps"] / local["fps"]
        print(f"  {key:<22}{ratios[key]:>6.2f}   Ray start-up {ray['ready_s']:.1f} s "
              f"(MultiSync {local['ready_s']:.1f} s)")
    print(json.dumps({"cores": os.cpu_count(), "load_before": round(load_before[0], 2),
                      "load_after": round(os.getloadavg()[0], 2),
                      "ray_over_multisync": {k: round(v, 3) for k, v in ratios.items()},
                      "rows": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows]}))


if __name__ == "__main__":
    main()
