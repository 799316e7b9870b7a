"""Where one PPO update of a preset spends its time, per 500-row minibatch, against the bare critic's rate.

The update timed is the standard step (``ppo.compile_step=false``: compiled losses, autograd, a fused Adam step; the
default preset's until c67b60e), whose parts can be timed apart; the default preset's one-graph step
(``ppo.compile_step``) is one of the ``--ab`` variants.

Prints (a) milliseconds per minibatch of each part of ``PPOUpdate._update`` (GAE critic pass, index and gather,
losses forward, backward, gradient clip, Adam step, metric sums), timed with ``perf_counter`` around each part over
whole updates of one collected cheetah-run batch, and (b) the forward-and-backward rate of a bare critic MLP (the
preset's sizes) on one minibatch, eager and compiled, next to dense matmul rates at 500 and 4096 rows: the practical
ceiling of the update's FLOP rate on these cores. With ``--profile``, then (c) torch.profiler's table of one more
whole update (the ops with the most self CPU time: matmuls, the compiled graphs, dynamo's guard checks, Adam).

    python benchmarks/update_parts.py                      # the default preset, ppo.compile_step=false
    python benchmarks/update_parts.py ppo.compile=false    # any hydra overrides
    python benchmarks/update_parts.py --profile            # + the profiler table
    python benchmarks/update_parts.py --ab                 # (d) instead: candidate update variants

With ``--ab`` it prints (d) instead: whole updates of the same batch from the same state (weights, Adam state,
permutation, RNG), the standard step taking turns with variants that change how it runs, not what it computes:
inductor's ``cpp_wrapper`` for the compiled losses (their kernels called from a C++ wrapper, not Python), the
gradient clip and Adam step compiled into a graph of their own, and ``ppo.compile_step`` (the whole minibatch step in
one graph, ``PPOUpdate._one_graph_step``: the default preset's). Per variant: the first update (its compile), the
median of the others, the median over rounds of standard / variant times (paired: the box is shared), and the largest
difference of any weight from the standard step's after one update (0: the same floats).
"""
from __future__ import annotations

import copy
import logging
import statistics
import sys
import time
import warnings

import torch
from torchrl_gorl import config_readers
from torchrl_gorl.collectors import collect_batch

from train_throughput import Loop, matmul_gflops

from torchrl_gorl.training.ppo_update import _minibatch_guards, _own_code


def critic_gflops(cfg, obs_dim: int, rows: int, compiled: bool, reps: int = 200) -> float:
    cells = list(cfg.encoder.critic_num_cells)
    layers, width = [], obs_dim
    for cell in cells:
        layers += [torch.nn.Linear(width, cell), torch.nn.SiLU()]
        width = cell
    net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))
    fn = torch.compile(net) if compiled else net
    x = torch.randn(rows, obs_dim)
    for _ in range(10):
        fn(x).square().mean().backward()
    start = time.perf_counter()
    for _ in range(reps):
        fn(x).square().mean().backward()
    dims = [obs_dim, *cells, 1]
    flops = 3 * 2 * rows * sum(a * b for a, b in zip(dims[:-1], dims[1:]))  # forward + backward (2x)
    return flops * reps / (time.perf_counter() - start) / 1e9


def compare_variants(U, cfg, ppo, data, rounds: int = 12) -> None:
    """(d): the standard step's update against variants of how it runs, from the same state every time."""
    modules = [ppo.actor, ppo.critic]
    state = (copy.deepcopy([m.state_dict() for m in modules]), copy.deepcopy(ppo.optimizer.state_dict()),
             ppo.permutation, torch.get_rng_state())

    # ppo.compile_step: another PPOUpdate on the same actor and critic (its losses call them directly)
    one_graph_cfg = copy.deepcopy(cfg)
    one_graph_cfg.ppo.compile_step = True
    one_graph = U.make_ppo_update(one_graph_cfg, ppo.actor, ppo.critic, config_readers.resolve_gamma(cfg), ppo.device,
                                  ppo.observation_norm)

    def restore(update) -> None:
        for module, weights in zip(modules, state[0]):
            module.load_state_dict(weights)
        update.optimizer.load_state_dict(copy.deepcopy(state[1]))  # the same optimiser: a compiled step stays valid
        update.permutation = state[2]
        torch.set_rng_state(state[3])

    def clip_and_adam() -> torch.Tensor:
        grad_norm = torch.nn.utils.clip_grad_norm_(ppo.params, ppo.max_grad_norm)
        ppo.optimizer.step()
        return grad_norm

    compiled_clip_and_adam = torch.compile(clip_and_adam, dynamic=False)

    def compiled_step(loss: torch.Tensor) -> torch.Tensor:
        ppo.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return compiled_clip_and_adam()

    standard = (ppo.minibatch_losses, ppo.step)
    cpp_wrapper = torch.compile(_own_code(ppo._minibatch_losses), backend=ppo.compile_backend, dynamic=False,
                                options={"guard_filter_fn": _minibatch_guards, "cpp_wrapper": True})
    variants = {"standard step": (ppo, standard), "losses with cpp_wrapper": (ppo, (cpp_wrapper, ppo.step)),
                "clip and Adam compiled": (ppo, (ppo.minibatch_losses, compiled_step)),
                "ppo.compile_step": (one_graph, None)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    weights: dict[str, torch.Tensor] = {}
    for round_ in range(rounds + 1):  # round 0: each variant's first update, its compile
        for name, (update, parts) in variants.items():
            if parts is not None:
                ppo.minibatch_losses, ppo.step = parts
            restore(update)
            start = time.perf_counter()
            update.update(data.clone())
            times[name].append(time.perf_counter() - start)
            if round_ == 0:
                weights[name] = torch.cat([p.detach().flatten() for p in ppo.params])
    ppo.minibatch_losses, ppo.step = standard
    del ppo.step  # the class's method again
    print(f"(d) whole updates of {data.numel():,} env steps from the same state, {rounds} rounds after the first:")
    for name, spent in times.items():
        ratio = statistics.median(a / b for a, b in zip(times["standard step"][1:], spent[1:]))
        diff = (weights[name] - weights["standard step"]).abs().max().item()
        print(f"  {name:26s} first {spent[0]:6.1f} s   median {statistics.median(spent[1:]) * 1e3:6.0f} ms   "
              f"standard / this {ratio:.3f}   max |weight - standard's| {diff:.2e}")


def main() -> None:
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    overrides = [arg for arg in sys.argv[1:] if arg not in ("--profile", "--ab")]
    # the standard step: its parts can be timed apart, and --ab compares the one-graph step against it
    loop = Loop("cheetah-run", ["preset=cpu_fast", "ppo.compile_step=false", *overrides])
    ppo, cfg = loop.ppo, loop.cfg
    loop.seed += 1
    data = collect_batch(loop.collector, loop.batches, loop.seed, loop.device, reseed_envs=False)
    loop.close()
    torch.set_num_threads(cfg.ppo.num_threads or torch.get_num_threads())
    if "--ab" in sys.argv[1:]:
        compare_variants(loop.U, cfg, ppo, data)
        return
    parts = ["gae", "gather", "forward", "backward", "clip", "adam", "metrics"]
    for repeat in range(3):  # the box is shared: three updates show the spread
        spent, count, totals = dict.fromkeys(parts, 0.0), 0, {}
        for _ in range(cfg.ppo.epochs):
            t0 = time.perf_counter()
            ppo.gae_(data)
            rows = data.select(*ppo.minibatch_keys, strict=False).reshape(-1)
            spent["gae"] += time.perf_counter() - t0
            batches = ppo.minibatches(rows)
            while True:
                t = [time.perf_counter()]
                batch = next(batches, None)  # the first one gathers the epoch
                if batch is None:
                    break
                t.append(time.perf_counter())
                losses, metrics = ppo.minibatch_losses(batch)
                loss = sum(losses.values())
                t.append(time.perf_counter())
                ppo.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                t.append(time.perf_counter())
                metrics["grad_norm"] = torch.nn.utils.clip_grad_norm_(ppo.params, ppo.max_grad_norm)
                t.append(time.perf_counter())
                ppo.optimizer.step()
                t.append(time.perf_counter())
                for key, value in {**metrics, **losses}.items():
                    totals[key] = totals.get(key, 0.0) + value.detach().mean()
                t.append(time.perf_counter())
                for part, a, b in zip(parts[1:], t[:-1], t[1:]):
                    spent[part] += b - a
                count += 1
        total = sum(spent.values())
        print(f"update {repeat}: {total * 1e3:.0f} ms, {data.numel() / total:,.0f} env steps/s; ms per minibatch: "
              + ", ".join(f"{part} {spent[part] / count * 1e3:.2f}" for part in parts))
    obs_dim = data["observation"].shape[-1]
    rows, threads = ppo.minibatch_size, torch.get_num_threads()
    print(f"matmul x256x256 GFLOP/s, {threads} threads: {rows} rows {matmul_gflops(threads, rows=rows):.0f}, "
          f"4096 rows {matmul_gflops(threads):.0f}")
    print(f"bare critic forward+backward on {rows} rows, GFLOP/s: eager {critic_gflops(cfg, obs_dim, rows, False):.0f}, "
          f"compiled {critic_gflops(cfg, obs_dim, rows, True):.0f}")
    if "--profile" in sys.argv[1:]:
        from torch.profiler import profile, ProfilerActivity

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            ppo.update(data.clone())
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=45))


if __name__ == "__main__":
    main()
