"""One-command GPU check: the CUDA tests, a GoRL smoke run on the GPU, and a throughput table, in one report.

    python benchmarks/gpu_check.py                                  # on a GPU machine, 2048 envs
    python benchmarks/gpu_check.py --device cpu --num-envs 16 --steps 20 --workers 2   # the same code on CPU

Sections (each one is timed, and a failure is written into the report instead of stopping the check):

1. the machine: GPU, CUDA, torch / torchrl / JAX versions, JAX's devices;
2. the CUDA tests (``pytest -m gpu``);
3. smoke runs of ``gorl_ppo.py`` with ``device=<device>``: dm_control envs on the CPU, and (when the
   ``playground`` extra is installed) MuJoCo Playground physics on the same device as the policy;
4. throughput at ``--num-envs`` envs, GoRL policy (latent actor + 10-step flow decoder) on the device:
   - ``dm_control``: TorchRL's multi-process sync collector, ``--workers`` CPU processes each stepping
     ``BatchedDMControlEnv(num_envs / workers)``, the policy on the device in every worker;
   - ``playground``: one in-process collector over ``MujocoPlaygroundEnv(num_envs)`` on the device;
   each without and with the collectors' ``compile_policy`` and ``cudagraph_policy`` (CUDA only).
   Collection is timed over ``--batches`` batches of ``num_envs x --steps`` env steps after a warm-up
   batch (start-up and compilation are reported apart); the PPO update (``preset=paper``: 16 epochs x 32
   minibatches, on the device) is timed once per backend on a full ``num_envs x 1000`` batch (the collected
   steps repeated along time). The whole-iteration rate is ``num_envs x 1000 / (collect time + update time)``.

The report (markdown, with every number also as JSON at the end) goes to ``--out`` (default
``benchmarks/results/gpu_check_<device>.md``). On the device machine lent to some sessions, see
docs/scaling.md ("GPU") for how the packages travel and the exact command.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
import warnings

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOTA = ROOT / "sota-implementations"
sys.path.insert(0, str(SOTA))
sys.path.insert(0, str(ROOT))


def compose(*overrides: str):
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(SOTA / "config"), version_base="1.3"):
        return hydra_compose(config_name="gorl_ppo", overrides=list(overrides))


def has_playground() -> bool:
    import importlib.util

    return importlib.util.find_spec("mujoco_playground") is not None


# --------------------------------------------------------------------------- sections
def machine(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu_cores": os.cpu_count(),
            "device": str(device)}
    with contextlib.suppress(Exception):
        import torchrl

        info["torchrl"] = torchrl.__version__
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    multiprocessors=props.multi_processor_count)
    with contextlib.suppress(Exception):
        import jax

        info["jax"], info["jax_devices"] = jax.__version__, [str(d) for d in jax.devices()]
    return info


def cuda_tests(timeout: float) -> dict:
    """``pytest -m gpu``: the tests that need a CUDA device (skipped, not failed, without one)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", str(ROOT / "tests")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    summary = next((line for line in reversed(proc.stdout.splitlines()) if re.search(r"\d+ (passed|failed|skipped|error|deselected)", line)), "")
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", summary)}
    return {"returncode": proc.returncode, "summary": summary.strip("= "), **counts,
            "tail": proc.stdout[-1500:] if proc.returncode not in (0, 5) else ""}


def smoke_run(device: torch.device, timeout: float, *overrides: str) -> dict:
    """``gorl_ppo.py preset=smoke`` on ``device``: two stages, a decoder refit, the final evaluation."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(SOTA / "gorl_ppo.py"), "preset=smoke", f"device={device}", "logger.backend=",
               f"hydra.run.dir={tmp}", *overrides]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        wall = time.perf_counter() - start
        if proc.returncode:
            return {"ok": False, "wall_s": wall, "stderr_tail": proc.stderr[-1500:]}
        summary = json.loads((pathlib.Path(tmp) / "summary.json").read_text())
    return {"ok": True, "wall_s": round(wall, 1), "frames_total": summary["frames_total"],
            "final_return": round(summary["final_return"], 1), "run_fps": round(summary["fps"], 1)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: one Playground env per (task, num_envs, device), shared by every configuration: its JAX functions compile once
_PLAYGROUND_ENVS: dict = {}


def _env_for(cfg, task_name: str, num_envs: int, env_device: torch.device):
    """A Playground env from the cache (the collector must not close it), or ``None`` for dm_control."""
    import utils_gorl as U

    if cfg.env.backend != "playground":
        return None
    key = (task_name, num_envs, str(env_device))
    if key not in _PLAYGROUND_ENVS:
        _PLAYGROUND_ENVS[key] = U.env_maker(cfg, task_name, num_envs, env_device)()
    return _PLAYGROUND_ENVS[key]


def _setup(env_backend: str, device: torch.device, num_envs: int, task: str, *, identity: bool):
    """``preset=paper`` config, the GoRL policy on ``device`` (encoder and decoder) and where the envs live."""
    import utils_gorl as U

    from torchrl_gorl import make_gorl_policy

    cfg = compose("preset=paper", f"env.task={task}", f"env.backend={env_backend}", f"collector.num_envs={num_envs}",
                  f"device={device}")
    task_name = U.task_id(task)
    obs_dim, act_dim = U.env_dims(cfg, task_name)
    torch.manual_seed(0)
    actor, critic, norm = U.make_encoder(cfg, obs_dim, act_dim, device)
    policy = make_gorl_policy(actor, U.make_decoder(cfg, obs_dim, act_dim, device, identity=identity))
    return cfg, task_name, (obs_dim, act_dim), (actor, critic, norm), policy, U.train_env_device(cfg, device)


def throughput(env_backend: str, device: torch.device, *, num_envs: int, steps: int, batches: int, workers: int,
               task: str, compile_policy: bool, cudagraph_policy: bool) -> dict:
    """Collection rate of one collector configuration (see the module docstring)."""
    import utils_gorl as U
    from torchrl.collectors import Collector
    from torchrl.envs import EnvCreator

    # a random decoder: the full 10-step cost of a trained one
    cfg, task_name, _, _, policy, env_device = _setup(env_backend, device, num_envs, task, identity=False)
    common = dict(frames_per_batch=num_envs * steps, total_frames=-1, policy_device=device, env_device=env_device,
                  storing_device=device, auto_register_policy_transforms=False,
                  compile_policy={"warmup": 1} if compile_policy else None,
                  cudagraph_policy={"warmup": 2} if cudagraph_policy else None)
    start = time.perf_counter()
    env = _env_for(cfg, task_name, num_envs, env_device)
    if env is None:
        create = EnvCreator(U.env_maker(cfg, task_name, num_envs // workers, env_device))
        collector = Collector([create] * workers, policy, num_collectors=workers, sync=True, **common)
    else:
        collector = Collector(env, policy, **common)
    try:
        it = iter(collector)
        next(it)  # start-up, first reset, compilation, graph capture
        _sync(device)
        startup = time.perf_counter() - start
        start, frames = time.perf_counter(), 0
        for _ in range(batches):
            frames += next(it).numel()
        _sync(device)
        return {"fps": frames / (time.perf_counter() - start), "startup_s": startup}
    finally:
        collector.shutdown(close_env=env is None)


def update_time(env_backend: str, device: torch.device, *, num_envs: int, steps: int, task: str) -> dict:
    """Seconds of one PPO update (``preset=paper``) on a full ``num_envs x 1000`` batch, and its FLOP rate."""
    import utils_gorl as U
    from torchrl_gorl import config_readers
    from torchrl.collectors import Collector

    cfg, task_name, dims, (actor, critic, norm), policy, env_device = _setup(env_backend, device, num_envs, task,
                                                                            identity=True)
    env = _env_for(cfg, task_name, num_envs, env_device)
    collector = Collector(env or U.env_maker(cfg, task_name, num_envs, env_device)(), policy,
                          frames_per_batch=num_envs * steps, total_frames=-1, policy_device=device,
                          env_device=env_device, storing_device=device, auto_register_policy_transforms=False)
    data = next(iter(collector)).reshape(num_envs, steps)
    collector.shutdown(close_env=env is None)
    data = torch.cat([data] * math.ceil(1000 / steps), dim=1)[:, :1000].contiguous()
    ppo = U.make_ppo_update(cfg, actor, critic, config_readers.resolve_gamma(cfg), device, norm)
    ppo.update(data[: max(1, num_envs // 8)].clone())  # warm-up (allocator, kernels) on a slice
    _sync(device)
    start = time.perf_counter()
    ppo.update(data.clone())
    _sync(device)
    seconds = time.perf_counter() - start
    flops = update_flops(cfg, *dims) * data.numel()
    return {"update_s": seconds, "frames": data.numel(), "tflops": flops / seconds / 1e12}


def update_flops(cfg, obs_dim: int, act_dim: int) -> float:
    """Dense-layer FLOPs of the PPO update per env step: per epoch, the critic's forward pass for GAE (one per
    observation: ``PPOUpdate.critic_values`` re-runs it only at done rows, a thousandth of the batch) and the actor's
    and critic's forward + backward passes on every sample (backward ~ 2x forward)."""
    def mlp(sizes):
        return sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))

    actor = mlp([obs_dim, *cfg.encoder.num_cells, 2 * act_dim])
    critic = mlp([obs_dim, *cfg.encoder.critic_num_cells, 1])
    return cfg.ppo.epochs * (critic + 3 * (actor + critic))


# --------------------------------------------------------------------------- report
def report_md(results: dict) -> str:
    m = results["machine"]
    lines = [f"# GPU check ({m.get('gpu', m['device'])})", "",
             f"Command: `{results['command']}`  ", f"Date: {results['date']}, total {results['total_s']:.0f} s", "",
             "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in m.items()]
    t = results.get("cuda_tests", {})
    lines += ["", "## CUDA tests", "", f"`pytest -m gpu`: {t.get('summary') or t.get('error', 'not run')}"]
    lines += ["", "## Smoke runs (`gorl_ppo.py preset=smoke`)", "", "| env backend | ok | wall s | env steps | final return |",
              "|---|---|---|---|---|"]
    for name, r in results.get("smoke", {}).items():
        lines.append(f"| {name} | {r.get('ok')} | {r.get('wall_s', '')} | {r.get('frames_total', '')} | "
                     f"{r.get('final_return', r.get('error', r.get('stderr_tail', ''))[-200:].replace(chr(10), ' '))} |")
    n = results["args"]["num_envs"]
    lines += ["", f"## Throughput at {n} envs (env steps/s)", "",
              "| env backend | policy | collection | start-up s | whole iteration |", "|---|---|---|---|---|"]
    for row in results.get("throughput", []):
        if "error" in row:
            lines.append(f"| {row['env_backend']} | {row['variant']} | error: {row['error'][-160:]} | | |")
        else:
            lines.append(f"| {row['env_backend']} | {row['variant']} | {row['fps']:,.0f} | {row['startup_s']:.1f} | "
                         f"{row.get('whole_fps', float('nan')):,.0f} |")
    for backend, u in results.get("update", {}).items():
        if "error" in u:
            lines.append(f"\nPPO update ({backend}): error {u['error'][-300:]}")
        else:
            lines.append(f"\nPPO update ({backend}, preset=paper, {u['frames']:,} env steps): {u['update_s']:.2f} s, "
                         f"{u['tflops']:.2f} TFLOP/s of dense-layer work.")
    lines += ["", "## Raw numbers", "", "```json", json.dumps(results, indent=1, default=str), "```", ""]
    return "\n".join(lines)


def guarded(results: dict, key: str, fn, *args, **kwargs):
    try:
        results[key] = fn(*args, **kwargs)
    except Exception as err:  # the report says what failed; the other sections still run
        results[key] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-2000:]}
    return results[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run of the same code")
    parser.add_argument("--num-envs", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=None, help="dm_control collector processes (default: cores)")
    parser.add_argument("--steps", type=int, default=50, help="env steps per env per timed batch")
    parser.add_argument("--batches", type=int, default=3, help="timed batches per configuration")
    parser.add_argument("--task", default="CheetahRun")
    parser.add_argument("--skip", nargs="*", default=[], choices=["tests", "smoke", "dm_control", "playground", "update"])
    parser.add_argument("--budget-s", type=float, default=450,
                        help="sections not started within this many seconds are skipped (and listed); the tests and "
                             "smoke runs get at most the time left")
    parser.add_argument("--out", default=None, help="report path (default benchmarks/results/gpu_check_<device>.md)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available here; use --device cpu for a dry run.")
    workers = args.workers or max(1, min(os.cpu_count() or 1, args.num_envs))
    if args.num_envs % workers:
        raise SystemExit(f"--num-envs {args.num_envs} must be a multiple of --workers {workers}.")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    out = pathlib.Path(args.out or ROOT / "benchmarks" / "results" / f"gpu_check_{device.type}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    results = {"command": " ".join(["python", "benchmarks/gpu_check.py", *sys.argv[1:]]),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "args": {**vars(args), "workers": workers}}
    results["machine"] = machine(device)
    print(json.dumps(results["machine"]), flush=True)

    def left() -> float:
        return args.budget_s - (time.perf_counter() - begin)

    def save() -> None:  # after every section: a run cut short by its time limit still leaves a report
        results["total_s"] = time.perf_counter() - begin
        out.write_text(report_md(results))

    def skipped() -> dict | None:
        return {"error": f"skipped: past --budget-s {args.budget_s:.0f}"} if left() < 20 else None

    save()
    if "tests" not in args.skip:
        results["cuda_tests"] = skipped() or {}
        if not results["cuda_tests"]:
            guarded(results, "cuda_tests", cuda_tests, timeout=min(240, left()))
        print("cuda tests:", results["cuda_tests"].get("summary", results["cuda_tests"]), flush=True)
        save()
    backends = [b for b in ("dm_control", "playground") if b not in args.skip]
    if "playground" in backends and not has_playground():
        backends.remove("playground")
        results["playground"] = "not installed (pip install -e '.[playground]')"
    if "smoke" not in args.skip:
        results["smoke"] = {}
        for backend in backends:
            extra = [f"env.backend={backend}"] + (["env.task=CheetahRun"] if backend == "playground" else [])
            results["smoke"][backend] = skipped()
            if results["smoke"][backend] is None:
                guarded(results["smoke"], backend, smoke_run, device, min(300, left()), *extra)
            print(f"smoke {backend}:", results["smoke"][backend], flush=True)
            save()

    variants = {"plain": (False, False), "compile_policy": (True, False)}
    if device.type == "cuda":
        variants.update({"cudagraph_policy": (False, True), "compile + cudagraph": (True, True)})
    results["throughput"], results["update"] = [], {}
    for backend in backends:
        if "update" not in args.skip:
            results["update"][backend] = skipped()
            if results["update"][backend] is None:
                guarded(results["update"], backend, update_time, backend, device, num_envs=args.num_envs,
                        steps=args.steps, task=args.task)
            print(f"update {backend}:", {k: v for k, v in results["update"][backend].items() if k != "traceback"}, flush=True)
            save()
        for name, (comp, graph) in variants.items():
            row = {"env_backend": backend, "variant": name, **(skipped() or {})}
            if "error" not in row:
                guarded(row, "m", throughput, backend, device, num_envs=args.num_envs, steps=args.steps,
                        batches=args.batches, workers=workers if backend == "dm_control" else 1, task=args.task,
                        compile_policy=comp, cudagraph_policy=graph)
                row.update(row.pop("m"))
            update = results["update"].get(backend, {})
            if "fps" in row and "update_s" in update:
                collect_s = update["frames"] / row["fps"]
                row["whole_fps"] = update["frames"] / (collect_s + update["update_s"])
            results["throughput"].append(row)
            print(f"throughput {backend} {name}:", {k: v for k, v in row.items() if k != "traceback"}, flush=True)
            save()
    print(f"report: {out} ({results['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
