"""Collection throughput on dm_control: raw physics loop vs TorchRL's standard path vs torchrl_gorl's batched env.

All numbers come from this one run, on the same cores, so the ratios hold even on a shared, noisy machine:

(a) raw dm_control ``env.step`` loop with random actions, in one process and in one process per core;
(b) TorchRL's standard path with the GoRL policy (latent actor + 10-step flow decoder): ``Collector`` over
    ``SerialEnv`` / ``ParallelEnv`` of ``DMControlEnv`` (+ CatTensors, DoubleToFloat, tanh), and the
    multi-process sync collector over ``SerialEnv``; the best of these;
(c) our path with the same policy: ``BatchedDMControlEnv`` in one process and under the multi-process sync
    collector (one worker per core), the last also with the policy compiled in each worker
    (``collector.compile_policy``: the cpu_fast preset's 16 envs per worker, eager and compiled, and 128); the best
    of these.

    python benchmarks/collect_throughput.py                 # walker-walk and cheetah-run
    python benchmarks/collect_throughput.py --all-tasks     # the six paper tasks
    python benchmarks/collect_throughput.py --frames 20000  # frames per measurement

It also times whole training iterations of the CPU preset (collection + PPO update) with both env backends.

The last line printed is one JSON object for walker-walk: raw_fps (all cores), torchrl_fps, ours_fps,
ours_over_raw, ours_over_torchrl.
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import multiprocessing as mp
import os
import pathlib
import time
import warnings

import numpy as np
import torch
from torchrl_gorl import config_readers
from torchrl_gorl.collectors import collect_batch

ROOT = pathlib.Path(__file__).resolve().parents[1]
TASKS = ["walker-walk", "cheetah-run"]
PAPER_TASKS = ["cheetah-run", "finger-spin", "finger-turn_hard", "fish-swim", "hopper-stand", "walker-walk"]


def raw_loop(task: str, steps: int, seed: int = 0) -> float:
    """Frames per second of dm_control's own step loop with uniform random actions (resets included)."""
    from dm_control import suite

    domain, name = task.split("-", 1)
    env = suite.load(domain, name, task_kwargs={"random": seed})
    spec = env.action_spec()
    rng = np.random.default_rng(seed)
    actions = rng.uniform(spec.minimum, spec.maximum, size=(1000, *spec.shape))
    env.reset()
    start = time.perf_counter()
    for i in range(steps):
        if env.step(actions[i % 1000]).last():
            env.reset()
    return steps / (time.perf_counter() - start)


def raw_all_cores(task: str, steps: int, workers: int) -> float:
    with mp.get_context("spawn").Pool(workers) as pool:
        rates = pool.starmap(raw_loop, [(task, steps, seed) for seed in range(workers)])
    return float(sum(rates))


def gorl_policy(obs_dim: int, act_dim: int):
    from torchrl_gorl import FlowDecoderModule, make_gorl_policy, make_latent_actor

    torch.manual_seed(0)
    decoder = FlowDecoderModule(obs_dim, act_dim, num_steps=10)  # random weights: the full 10-step cost
    return make_gorl_policy(make_latent_actor(obs_dim, act_dim), decoder)


def collector_fps(task: str, frames: int, *, backend: str, num_envs: int, workers: int, parallel: int = 0,
                  compile_policy: bool = False) -> float:
    """Frames per second of a TorchRL collector running the GoRL policy, after one warm-up batch.

    ``workers``: processes of a multi-process sync collector (0: the collector runs in this process);
    ``parallel``: instead, a ``ParallelEnv`` of that many processes, each stepping ``num_envs // parallel`` envs;
    ``compile_policy``: the policy compiled in each collector (``collector.compile_policy``; compiled at the first
    policy call, before the timed batches).
    """
    from torchrl.collectors import Collector
    from torchrl.envs import EnvCreator, ParallelEnv

    from torchrl_gorl.collectors import POLICY_COMPILE
    from torchrl_gorl.envs import make_env, make_single_env

    probe = make_single_env(task)
    policy = gorl_policy(probe.observation_spec["observation"].shape[-1], probe.action_spec.shape[-1])
    probe.close()
    frames_per_batch = num_envs * 250
    common = dict(frames_per_batch=frames_per_batch, total_frames=-1, auto_register_policy_transforms=False,
                  compile_policy=POLICY_COMPILE if compile_policy else None)
    if parallel:
        env = ParallelEnv(parallel, EnvCreator(functools.partial(make_env, task, num_envs // parallel, backend=backend)))
        collector = Collector(env, policy, **common)
    elif workers == 0:
        collector = Collector(make_env(task, num_envs, backend=backend), policy, **common)
    else:
        create = EnvCreator(functools.partial(make_env, task, num_envs // workers, backend=backend))
        collector = Collector([create] * workers, policy, num_collectors=workers, sync=True, **common)
    batches = iter(collector)
    next(batches)  # warm-up: worker start-up, first resets, lazy initialisation
    collected, start = 0, time.perf_counter()
    while collected < frames:
        collected += next(batches).numel()
    fps = collected / (time.perf_counter() - start)
    collector.shutdown()
    return fps


def training_fps(task: str, backend: str, iterations: int) -> float:
    """Env steps per second of whole CPU-preset PPO iterations (collect 8 x 1000 steps + the PPO update)."""
    import sys

    from hydra import compose, initialize_config_dir

    sys.path.insert(0, str(ROOT / "sota-implementations"))
    import utils_gorl as U

    from torchrl_gorl import make_gorl_policy

    with initialize_config_dir(config_dir=str(ROOT / "sota-implementations" / "config"), version_base="1.3"):
        cfg = compose(config_name="gorl_ppo", overrides=["preset=cpu", f"env.task={task}",
                                                         f"collector.env_backend={backend}"])
    device = torch.device("cpu")
    obs_dim, act_dim = U.env_dims(cfg, task)
    actor, critic, norm = U.make_encoder(cfg, obs_dim, act_dim, device)
    decoder = U.make_decoder(cfg, obs_dim, act_dim, device)  # a trained-size decoder: 10 Euler steps
    collector = U.make_collector(cfg, task, make_gorl_policy(actor, decoder), device)
    ppo = U.make_ppo_update(cfg, actor, critic, config_readers.resolve_gamma(cfg), device, norm)
    batches = iter(collector)
    frames, start = 0, None
    for i in range(iterations + 1):
        if i == 1:  # the first iteration warms up
            frames, start = 0, time.perf_counter()
        data = collect_batch(collector, batches, i, device)
        ppo.update(data)
        norm.update(data["observation"])
        collector.update_policy_weights_()
        frames += data.numel()
    collector.shutdown()
    return frames / (time.perf_counter() - start)


def measure_task(task: str, frames: int, cores: int) -> dict:
    row = {"task": task}
    row["raw_1proc"] = raw_loop(task, frames)
    row["raw_all_cores"] = raw_all_cores(task, frames, cores)
    torchrl = {
        "Collector(SerialEnv(8))": dict(backend="serial", num_envs=8, workers=0),
        f"Collector(ParallelEnv({cores}))": dict(backend="parallel", num_envs=cores, workers=0),
        f"MultiSyncCollector({cores} x SerialEnv(4))": dict(backend="serial", num_envs=4 * cores, workers=cores),
    }
    ours = {
        "Collector(BatchedDMControlEnv(64))": dict(backend="batched", num_envs=64, workers=0),
        f"MultiSyncCollector({cores} x BatchedDMControlEnv(64))": dict(backend="batched", num_envs=64 * cores, workers=cores),
        f"MultiSyncCollector({cores} x BatchedDMControlEnv(128))": dict(backend="batched", num_envs=128 * cores, workers=cores),
        f"Collector(ParallelEnv({cores} x BatchedDMControlEnv(64)))": dict(backend="batched", num_envs=64 * cores, workers=0, parallel=cores),
        # the cpu_fast preset's collector (16 envs per process), eager and with collector.compile_policy=true
        f"MultiSyncCollector({cores} x BatchedDMControlEnv(16))": dict(backend="batched", num_envs=16 * cores, workers=cores),
        f"MultiSyncCollector({cores} x BatchedDMControlEnv(16)), compiled policy": dict(
            backend="batched", num_envs=16 * cores, workers=cores, compile_policy=True),
        f"MultiSyncCollector({cores} x BatchedDMControlEnv(128)), compiled policy": dict(
            backend="batched", num_envs=128 * cores, workers=cores, compile_policy=True),
    }
    for group, configs in (("torchrl", torchrl), ("ours", ours)):
        rates = {name: collector_fps(task, frames, **kwargs) for name, kwargs in configs.items()}
        row[f"{group}_configs"] = rates
        best = max(rates, key=rates.get)
        row[f"{group}_fps"], row[f"{group}_best"] = rates[best], best
    row["ours_over_raw"] = row["ours_fps"] / row["raw_all_cores"]
    row["ours_over_torchrl"] = row["ours_fps"] / row["torchrl_fps"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all-tasks", action="store_true", help="the six paper tasks instead of walker and cheetah")
    parser.add_argument("--frames", type=int, default=16_000, help="frames per collector measurement")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="processes for the all-core numbers")
    parser.add_argument("--training-iterations", type=int, default=3,
                        help="CPU-preset PPO iterations timed per backend (0 to skip)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    tasks = PAPER_TASKS if args.all_tasks else TASKS
    rows = [measure_task(task, args.frames, args.cores) for task in tasks]
    print(f"{'task':<18}{'raw 1 proc':>12}{'raw all':>10}{'torchrl':>10}{'ours':>10}{'ours/raw':>10}{'ours/torchrl':>14}")
    for r in rows:
        print(f"{r['task']:<18}{r['raw_1proc']:>12.0f}{r['raw_all_cores']:>10.0f}{r['torchrl_fps']:>10.0f}"
              f"{r['ours_fps']:>10.0f}{r['ours_over_raw']:>10.2f}{r['ours_over_torchrl']:>14.2f}")
    for r in rows:
        print(f"\n{r['task']}: frames per second of every configuration (GoRL policy, {args.cores} cores)")
        for group in ("torchrl", "ours"):
            for name, fps in r[f"{group}_configs"].items():
                print(f"  {group:<8}{name:<66}{fps:>10.0f}")
    training = {}
    if args.training_iterations:
        print("\nwhole training iterations, CPU preset (8 envs x 1000 steps + PPO update), cheetah-run:")
        for backend in ("batched", "serial"):
            training[backend] = training_fps("cheetah-run", backend, args.training_iterations)
            print(f"  env_backend={backend:<10}{training[backend]:>10.0f} env steps/s")
    walker = next((r for r in rows if r["task"] == "walker-walk"), rows[0])
    print(json.dumps({
        "task": walker["task"], "cores": args.cores, "raw_fps": round(walker["raw_all_cores"], 1),
        "torchrl_fps": round(walker["torchrl_fps"], 1), "ours_fps": round(walker["ours_fps"], 1),
        "ours_over_raw": round(walker["ours_over_raw"], 3), "ours_over_torchrl": round(walker["ours_over_torchrl"], 3),
        "torchrl_best": walker["torchrl_best"], "ours_best": walker["ours_best"],
        "training_fps_cpu_preset": {k: round(v, 1) for k, v in training.items()},
    }))


if __name__ == "__main__":
    main()
