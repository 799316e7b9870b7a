"""Whole-training-loop throughput on dm_control: the cpu_fast preset against this machine's limit, the cpu preset
configuration and TorchRL's standard env path, all measured in one run on the same cores.

Per task (cheetah-run and walker-walk):

(a) raw dm_control ``env.step`` rate, one process per core (``collect_throughput.raw_all_cores``);
(b) the collection rate of cpu_fast's collector running the GoRL policy, timed inside (e);
(c) a dense 4096x256 @ 256x256 float32 matmul rate on ``ppo.num_threads`` threads (the update's), best of the rounds;
(d) the update's FLOPs per env step, counted by ``torch.utils.flop_counter.FlopCounterMode`` over one real update
    (every epoch's GAE critic pass and every minibatch's forward and backward);
    the bound is ``1 / (1/b + d/c)``: collection at its own rate plus the update at the matmul rate;
(e) whole PPO iterations of the ``cpu_fast`` preset (collect, update, normaliser update, weight sync; no
    evaluation), and the same with ``ppo.compile=false ppo.compile_step=false`` (what compiling the update gains);
(f) the same loop with the ``cpu`` preset's configuration: full-episode batches (8 envs x 1000 steps, reset every
    batch), one process, 10 epochs x 16 minibatches;
(g) the ``cpu_fast`` loop on TorchRL's standard env path (``collector.env_backend=serial``: ``SerialEnv`` of
    ``DMControlEnv``).

The configurations take turns for ``--rounds`` rounds (the machine is shared: interleaving spreads its noise over
all of them) and each reports its median round. The decoder has random weights (a refit decoder's 10 Euler steps:
stages 1 and later; stage 0's identity decoder is cheaper).

    python benchmarks/train_throughput.py                       # both tasks, the cpu_fast preset
    python benchmarks/train_throughput.py --tasks cheetah-run walker-walk finger-spin   # + the time-to-score task
    python benchmarks/train_throughput.py --tasks cheetah-run --ours preset=cpu_fast ppo.epochs=5   # a candidate

The last line printed is one JSON object for cheetah-run: bound_fps, ours_fps, old_fps, torchrl_fps,
ours_over_bound, ours_over_old (and the parts).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import statistics
import sys
import time
import warnings

import torch
from torchrl_gorl import config_readers
from torchrl_gorl.collectors import collect_batch
from torch.utils.flop_counter import FlopCounterMode

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sota-implementations"))
sys.path.insert(0, str(ROOT / "benchmarks"))

#: the configuration before unroll mode (full-episode batches of 8 envs, one process, 16 minibatches)
OLD = ["preset=cpu", "collector.unroll_length=null", "collector.num_envs=8", "collector.num_workers=0", "ppo.epochs=10",
       "ppo.num_minibatches=16", "ppo.num_threads=2", "num_threads=1"]


def compose(task: str, overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "sota-implementations" / "config"), version_base="1.3"):
        return hydra_compose(config_name="gorl_ppo", overrides=[f"env.task={task}", *overrides])


def matmul_gflops(threads: int, seconds: float = 1.0, rows: int = 4096) -> float:
    """Dense float32 ``rows``x256 @ 256x256 rate on ``threads`` threads: the update's layer shape at a large batch."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(rows, 256), torch.randn(256, 256)
    for _ in range(20):
        a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            a @ b
        n += 20
    rate = 2 * rows * 256 * 256 * n / (time.perf_counter() - start) / 1e9
    torch.set_num_threads(before)
    return rate


class _GlobalOnly:
    """A stand-in for FlopCounterMode's module tracker: every FLOP is counted under "Global" only."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


class Loop:
    """One configuration's training loop, built once; :meth:`run` times whole iterations of it."""

    def __init__(self, task: str, overrides: list[str]) -> None:
        import utils_gorl as U

        from torchrl_gorl import make_gorl_policy

        self.U, self.cfg = U, compose(task, overrides)
        U.validate_config(self.cfg)
        U.set_threads(self.cfg.num_threads)
        self.device = torch.device("cpu")
        obs_dim, act_dim = U.env_dims(self.cfg, task)
        torch.manual_seed(0)
        actor, critic, self.norm = U.make_encoder(self.cfg, obs_dim, act_dim, self.device)
        decoder = U.make_decoder(self.cfg, obs_dim, act_dim, self.device)  # random weights: the full 10-step cost
        self.collector = U.make_collector(self.cfg, task, make_gorl_policy(actor, decoder), self.device)
        self.ppo = U.make_ppo_update(self.cfg, actor, critic, config_readers.resolve_gamma(self.cfg), self.device, self.norm)
        self.batches = iter(self.collector)
        self.seed = 0
        start = time.perf_counter()
        self.iteration()  # warm-up: worker start-up, first resets, lazy initialisation, the ppo.compile compile
        self.warmup_s = time.perf_counter() - start

    def iteration(self) -> tuple[int, float, float]:
        """One PPO iteration as in the loop of gorl_ppo.py: returns (env steps, collect s, update s)."""
        start = time.perf_counter()
        self.seed += 1
        data = collect_batch(self.collector, self.batches, self.seed, self.device,
                              reseed_envs=config_readers.full_episode_batches(self.cfg))
        collected = time.perf_counter()
        self.ppo.update(data)
        self.norm.update(data["observation"])
        self.collector.update_policy_weights_()
        return data.numel(), collected - start, time.perf_counter() - collected

    def run(self, min_seconds: float) -> dict[str, float]:
        frames = collect_s = update_s = 0.0
        while collect_s + update_s < min_seconds:
            n, c, u = self.iteration()
            frames, collect_s, update_s = frames + n, collect_s + c, update_s + u
        return {"fps": frames / (collect_s + update_s), "collect_fps": frames / collect_s,
                "update_fps": frames / update_s}

    def update_flops_per_step(self) -> float:
        self.seed += 1
        data = collect_batch(self.collector, self.batches, self.seed, self.device,
                              reseed_envs=config_readers.full_episode_batches(self.cfg))
        counter = FlopCounterMode(display=False)
        counter.mod_tracker = _GlobalOnly()  # torch's module tracker cannot hash TensorDictModules
        # counted on the eager losses: the same arithmetic as the compiled ones (``ppo.compile``, ``ppo.compile_step``),
        # whose kernels the counter does not see, and no recompile under the counting mode
        compiled = self.ppo.minibatch_losses, self.ppo.one_graph_step
        self.ppo.minibatch_losses, self.ppo.one_graph_step = self.ppo._minibatch_losses, None
        with counter:
            self.ppo.update(data)
        self.ppo.minibatch_losses, self.ppo.one_graph_step = compiled
        self.collector.update_policy_weights_()
        return counter.get_total_flops() / data.numel()

    def close(self) -> None:
        self.collector.shutdown()


def measure_task(task: str, ours: list[str], rounds: int, seconds: float, cores: int, raw_steps: int) -> dict:
    from collect_throughput import raw_all_cores

    row: dict = {"task": task, "raw_fps": raw_all_cores(task, raw_steps, cores)}
    loops = {"ours": Loop(task, ours), "eager": Loop(task, [*ours, "ppo.compile=false", "ppo.compile_step=false"]), "old": Loop(task, OLD),
             "torchrl": Loop(task, [*ours, "collector.env_backend=serial"])}
    threads = loops["ours"].cfg.ppo.num_threads or torch.get_num_threads()
    row["update_flops_per_step"] = loops["ours"].update_flops_per_step()
    row["old_update_flops_per_step"] = loops["old"].update_flops_per_step()
    results: dict[str, list[dict]] = {name: [] for name in loops}
    matmul = []
    for _ in range(rounds):
        matmul.append(matmul_gflops(threads))
        for name, loop in loops.items():
            results[name].append(loop.run(seconds))
    for name, loop in loops.items():
        row[f"{name}_warmup_s"] = loop.warmup_s
        loop.close()
    for name, rates in results.items():
        for key in rates[0]:
            row[f"{name}_{key}"] = statistics.median(r[key] for r in rates)
    row["matmul_gflops"] = max(matmul)
    row["update_threads"] = threads
    collect, flops = row["ours_collect_fps"], row["update_flops_per_step"]
    row["update_bound_fps"] = row["matmul_gflops"] * 1e9 / flops
    row["bound_fps"] = 1 / (1 / collect + 1 / row["update_bound_fps"])
    row["update_gflops"] = row["ours_update_fps"] * flops / 1e9
    row["old_update_gflops"] = row["old_update_fps"] * row["old_update_flops_per_step"] / 1e9
    row["ours_over_bound"] = row["ours_fps"] / row["bound_fps"]
    row["ours_over_old"] = row["ours_fps"] / row["old_fps"]
    row["ours_over_torchrl"] = row["ours_fps"] / row["torchrl_fps"]
    row["ours_over_eager"] = row["ours_fps"] / row["eager_fps"]
    # the old configuration runs the same update code: bound / f caps what e / f can reach
    row["bound_over_old"] = row["bound_fps"] / row["old_fps"]
    return row


def report(row: dict, ours: list[str]) -> None:
    print(f"\n{row['task']}  (ours = {' '.join(ours) or 'the cpu preset'}; old = {' '.join(OLD)})")
    print(f"  (a) raw dm_control, one process per core      {row['raw_fps']:>10,.0f} env steps/s")
    print(f"  (b) collection of the preset's collector      {row['ours_collect_fps']:>10,.0f} env steps/s")
    print(f"  (c) matmul 4096x256x256, {row['update_threads']} threads             {row['matmul_gflops']:>10,.1f} GFLOP/s")
    print(f"  (d) update FLOPs per env step                 {row['update_flops_per_step'] / 1e6:>10,.2f} MFLOP "
          f"(old configuration: {row['old_update_flops_per_step'] / 1e6:.2f})")
    print(f"      update alone: {row['ours_update_fps']:,.0f} env steps/s = {row['update_gflops']:.1f} GFLOP/s "
          f"({row['update_gflops'] / row['matmul_gflops']:.2f} of the matmul rate; old configuration "
          f"{row['old_update_gflops']:.1f} GFLOP/s)")
    print(f"      bound 1/(1/b + d/c)                       {row['bound_fps']:>10,.0f} env steps/s")
    print(f"  (e) whole iteration, ours                     {row['ours_fps']:>10,.0f} env steps/s")
    print(f"      the same with the update eager            {row['eager_fps']:>10,.0f} env steps/s "
          f"(update {row['eager_update_fps']:,.0f}; compiled / eager {row['ours_over_eager']:.2f}; first "
          f"iteration {row['ours_warmup_s']:.0f} s compiled, {row['eager_warmup_s']:.0f} s eager)")
    print(f"  (f) whole iteration, old (cpu preset)         {row['old_fps']:>10,.0f} env steps/s "
          f"(collection {row['old_collect_fps']:,.0f}, update {row['old_update_fps']:,.0f})")
    print(f"  (g) whole iteration, TorchRL's SerialEnv path {row['torchrl_fps']:>10,.0f} env steps/s "
          f"(collection {row['torchrl_collect_fps']:,.0f})")
    print(f"  e / bound {row['ours_over_bound']:.2f}   e / f {row['ours_over_old']:.2f}   e / g {row['ours_over_torchrl']:.2f}")
    print(f"  bound / f {row['bound_over_old']:.2f}: the most e / f can be here (e at the bound)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["cheetah-run", "walker-walk"])
    parser.add_argument("--ours", nargs="*", default=["preset=cpu_fast"],
                        help="hydra overrides of the measured configuration (default: the cpu_fast preset)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per configuration")
    parser.add_argument("--seconds", type=float, default=8.0, help="minimum timed seconds per configuration and round")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="processes for the raw rate")
    parser.add_argument("--raw-steps", type=int, default=20_000, help="raw dm_control steps per process")
    parser.add_argument("--out", default="",
                        help="write every measured number as JSON here; learning_runs.py's time-to-score reads "
                             "benchmarks/results/train_throughput.json, made with --tasks cheetah-run walker-walk "
                             "finger-spin --rounds 2 --seconds 8 --out benchmarks/results/train_throughput.json")
    args = parser.parse_args()
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("torchrl").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")

    rows = [measure_task(task, args.ours, args.rounds, args.seconds, args.cores, args.raw_steps) for task in args.tasks]
    for row in rows:
        report(row, args.ours)
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv[1:]), "cores": args.cores,
                                                      "ours_overrides": args.ours, "tasks": rows}, indent=1) + "\n")
    cheetah = next((r for r in rows if r["task"] == "cheetah-run"), rows[0])
    keys = ["task", "bound_fps", "ours_fps", "old_fps", "torchrl_fps", "ours_over_bound", "ours_over_old",
            "ours_over_torchrl", "raw_fps", "ours_collect_fps", "matmul_gflops", "update_flops_per_step",
            "ours_update_fps", "update_gflops", "eager_fps", "ours_over_eager", "ours_warmup_s", "eager_warmup_s",
            "bound_over_old"]
    print(json.dumps({"cores": args.cores, "ours_overrides": args.ours,
                      **{k: round(v, 3) if isinstance(v, float) else v for k, v in cheetah.items() if k in keys}}))


if __name__ == "__main__":
    main()
