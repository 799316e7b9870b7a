"""Generated blocks in the docs: text between ``<!-- gen:NAME -->`` and ``<!-- /gen:NAME -->`` is rebuilt from the
saved result files (``results/``, ``benchmarks/results/``), never edited by hand. One command rebuilds every block
of README.md and docs/ and the README's figure; ``tests/test_docs_blocks.py`` checks that every block equals its
regeneration.

    python benchmarks/docblocks.py           # rewrite the stale blocks, redraw docs/img/default_command.png
    python benchmarks/docblocks.py --check   # list the stale blocks, change nothing (exit status 1 if any)

Owners: ``benchmarks/hopper_15m.py`` (the hopper-15m-* blocks), ``benchmarks/learning_runs.py`` (the learning grid
and the time-to-score table) and this file (the rest: the default command, the benchmarks' tables, the offline runs,
the Swiss roll). In reStructuredText the markers stand in comments (``.. <!-- gen:NAME -->``).
"""
from __future__ import annotations

import argparse
import csv
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "results"
README, DOCS = ROOT / "README.md", ROOT / "docs"
FIGURE = DOCS / "img" / "default_command.png"
MARKER = re.compile(r"<!-- gen:([a-z0-9-]+) -->")


def markers(name: str) -> tuple[str, str]:
    return f"<!-- gen:{name} -->", f"<!-- /gen:{name} -->"


def read_block(path: pathlib.Path, name: str) -> str:
    """The text of block ``name`` in ``path`` (without its markers and the rst comment prefix before the end)."""
    start, end = markers(name)
    text = path.read_text()
    if text.count(start) != 1 or text.count(end) != 1:
        raise ValueError(f"{path} must hold {start} and {end} once each")
    return text.split(start, 1)[1].split(end, 1)[0].removesuffix(".. ").strip("\n")


def write_block(path: pathlib.Path, name: str, body: str) -> bool:
    """Replaces block ``name`` in ``path`` with ``body``; returns whether the file changed."""
    start, end = markers(name)
    text = path.read_text()
    read_block(path, name)  # both markers, once each
    # in reStructuredText the markers are comments, and the body a paragraph of its own
    block = f"{start}\n\n{body}\n\n.. {end}" if path.suffix == ".rst" else f"{start}\n{body}\n{end}"
    new = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    if new != text:
        path.write_text(new)
    return new != text


def block_names(path: pathlib.Path) -> list[str]:
    """The names of the generated blocks a doc holds."""
    return MARKER.findall(path.read_text())


def documents() -> list[pathlib.Path]:
    return [README, *sorted(DOCS.glob("*.md")), *sorted(DOCS.glob("*.rst"))]


# ---------------------------------------------------------------------------------------------- saved files


def runs_of(stem: str, suffix: str = ".txt") -> list[pathlib.Path]:
    """``benchmarks/results/<stem><N><suffix>`` by run number N."""
    paths = BENCH.glob(f"{stem}*{suffix}")
    numbered = [(int(m.group(1)), p) for p in paths if (m := re.fullmatch(re.escape(stem) + r"(\d+)", p.stem))]
    return [p for _, p in sorted(numbered)]


def last_json(path: pathlib.Path) -> dict:
    """The JSON object a benchmark prints as its last line."""
    return json.loads(next(line for line in reversed(path.read_text().splitlines()) if line.startswith("{")))


def rel(path: pathlib.Path) -> str:
    return f"`{path.relative_to(ROOT)}`"


def run_name(path: pathlib.Path) -> str:
    return "run " + re.search(r"run(\d+)", path.stem).group(1)


def modules():
    """The block owners that import this file (imported here, at use, to keep the import one-way)."""
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    import hopper_15m
    import learning_runs

    return hopper_15m, learning_runs


# ------------------------------------------------------------------------------------- the default command


def seeds_cell(values: list[float], digits: int = 0) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in values)


def default_command() -> str:
    """README: what the default command gives, GoRL against Gaussian PPO on the same preset, and the loop's rate."""
    _, runs = modules()
    whole = runs.load_runs(ROOT / "results" / "default_preset")["cheetah-run"]["gorl_flow"]
    finals = [s["final_return"] for _, _, s in whole.values()]
    minutes = [s["wall_time_train_s"] / 60 for _, _, s in whole.values()]
    spread = runs.fmt(finals).rsplit(" (n=", 1)[0]
    tts = ROOT / "results" / "time_to_score"

    def reach(task: str, method: str) -> str:
        return " / ".join(runs.reach_cell(tts / task / method / f"seed{k}" / "eval.csv", runs.TTS_THRESHOLDS[task])
                          for k in (1, 2, 3))

    loop_file = runs_of("train_throughput_2core_run")[-1]
    loop = last_json(loop_file)
    rows = [
        "| cheetah-run, default preset, seeds 1 / 2 / 3 | GoRL (flow): the default command | Gaussian PPO, same preset |",
        "|---|---|---|",
        f"| return on fresh episodes after the whole run ({whole['seed1'][2]['frames_total'] / 1e6:.2f}M env steps) "
        f"| {seeds_cell(finals)} ({spread}) | not run |",
        f"| training minutes of the whole run | {seeds_cell(minutes, 1)} | not run |",
        *(f"| {'' if task == 'cheetah-run' else task + ' (`env.task=' + task + '`): '}training minutes (env steps) "
          f"to a return of {threshold:.0f} | {reach(task, 'gorl_flow')} | {reach(task, 'ppo_gaussian')} |"
          for task, threshold in runs.TTS_THRESHOLDS.items()),
        f"| training loop (`benchmarks/train_throughput.py`, {run_name(loop_file)}) | {loop['ours_fps']:,.0f} env "
        f"steps/s: {loop['ours_over_bound']:.2f} of this machine's bound ({loop['bound_fps']:,.0f}), "
        f"{loop['ours_over_old']:.2f}x the `cpu` preset's loop, {loop['ours_over_torchrl']:.2f}x TorchRL's standard "
        "env path | not measured |",
    ]
    note = ("Returns are deterministic 1000-step evaluations (8 episodes). Whole runs: `results/default_preset`; "
            "minutes to a score: `results/time_to_score` (the same training, ended at the first evaluation at the "
            f"threshold); the loop: {rel(loop_file)} (the bound: collection at its measured rate plus the update's "
            "FLOPs at the matmul rate, both measured in the same run on the same 2 cores).")
    return "\n".join([*rows, "", note])


def plot_default_command(path: pathlib.Path = FIGURE) -> None:
    """Return against env steps and against training minutes: the default command's runs (GoRL) and Gaussian PPO's
    on the same preset (its runs end at the time-to-score threshold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, runs = modules()
    threshold = runs.TTS_THRESHOLDS["cheetah-run"]
    curves = {"GoRL (flow), the default command": (ROOT / "results" / "default_preset", "gorl_flow", "tab:blue"),
              f"Gaussian PPO, same preset (stops at {threshold:.0f})": (ROOT / "results" / "time_to_score",
                                                                       "ppo_gaussian", "tab:orange")}
    fig, (steps_ax, clock_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, (results, method, color) in curves.items():
        for i, path_csv in enumerate(sorted((results / "cheetah-run" / method).glob("seed*/eval.csv"))):
            rows = list(csv.DictReader(path_csv.read_text().splitlines()))
            y = [float(r["return_mean"]) for r in rows]
            kwargs = {"color": color, "lw": 1.2, "alpha": 0.8, "label": label if i == 0 else None}
            steps_ax.plot([float(r["frames_total"]) / 1e6 for r in rows], y, **kwargs)
            clock_ax.plot([float(r["wall_time_train_s"]) / 60 for r in rows], y, **kwargs)
    for ax in (steps_ax, clock_ax):
        ax.axhline(threshold, color="gray", ls="--", lw=0.8)
        ax.set_ylabel("eval return (deterministic)")
        ax.grid(alpha=0.3)
    steps_ax.set_xlabel("env steps, millions (encoder PPO + decoder data)")
    clock_ax.set_xlabel("training minutes (2 CPU cores, evaluations excluded)")
    steps_ax.set_title("cheetah-run, seeds 1-3")
    clock_ax.set_title("the same runs against wall-clock")
    steps_ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def default_runs() -> str:
    """performance.md: the default command's whole runs per seed, and the `cpu` preset's grid at the same budget."""
    _, runs = modules()
    header = ("| seed | final return (fresh episodes) | best evaluation (env steps) | last evaluation | at half the "
              "budget | training minutes | env steps/s of training |\n|---|---|---|---|---|---|---|")
    whole = runs.load_runs(ROOT / "results" / "default_preset")["cheetah-run"]["gorl_flow"]
    half = next(iter(whole.values()))[2]["frames_total"] / 2
    lines, cols = [header], []
    for seed, (x, y, s) in whole.items():
        row = [s["final_return"], s["best_eval_return"], y[-1], runs.curve_at(x, y, half), s["wall_time_train_s"] / 60]
        cols.append(row)
        best_at = x[int(y.argmax())] / 1e6
        lines.append(f"| {seed.removeprefix('seed')} | {row[0]:.0f} | {row[1]:.0f} ({best_at:.2f}M) | {row[2]:.0f} | "
                     f"{row[3]:.0f} | {row[4]:.1f} | {s['frames_total'] / s['wall_time_train_s']:,.0f} |")
    spread = [runs.fmt(list(c)).rsplit(" (n=", 1)[0] for c in zip(*cols)]
    lines.append(f"| mean ± sd | {spread[0]} | {spread[1]} | {spread[2]} | {spread[3]} | "
                 f"{sum(c[4] for c in cols) / len(cols):.1f} | |")
    grid = runs.load_runs(ROOT / "results" / "learning")["cheetah-run"]["gorl_flow"]
    grid_cols = [[s["final_return"], s["best_eval_return"], y[-1], runs.curve_at(x, y, half)]
                 for x, y, s in grid.values()]
    cells = [f"{seeds_cell(c)} ({runs.fmt(list(c)).rsplit(' (n=', 1)[0]})" for c in zip(*grid_cols)]
    lines.append(f"| `cpu` preset, the grid (`results/learning`), seeds 1 / 2 / 3 | {' | '.join(cells)} | | |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- throughput


def throughput_table() -> str:
    """performance.md: the latest all-task run of train_throughput.py, (a)-(g) per task."""
    path = runs_of("train_throughput_run", ".json")[-1]
    tasks = json.loads(path.read_text())["tasks"]

    def row(label: str, cell) -> str:
        return f"| {label} | " + " | ".join(cell(t) for t in tasks) + " |"

    lines = [f"| env steps/s ({run_name(path)}, {rel(path)}) | " + " | ".join(t["task"] for t in tasks) + " |",
             "|---|" + "---|" * len(tasks),
             row("(a) raw dm_control, one process per core", lambda t: f"{t['raw_fps']:,.0f}"),
             row("(b) collection, the preset's collector (2 processes x 16 envs, GoRL policy compiled)",
                 lambda t: f"{t['ours_collect_fps']:,.0f}"),
             row("(c) dense 4096x256 @ 256x256 matmul, 2 threads (GFLOP/s)", lambda t: f"{t['matmul_gflops']:.0f}"),
             row("(d) PPO update MFLOP per env step (the `cpu` preset's, critic 5 x 256)",
                 lambda t: f"{t['update_flops_per_step'] / 1e6:.2f} ({t['old_update_flops_per_step'] / 1e6:.2f})"),
             row("bound `1 / (1/b + d/c)`", lambda t: f"{t['bound_fps']:,.0f}"),
             row("(e) whole iteration, the default preset", lambda t: f"**{t['ours_fps']:,.0f}**"),
             row("update alone, GFLOP/s (fraction of c)",
                 lambda t: f"{t['update_gflops']:.1f} ({t['update_gflops'] / t['matmul_gflops']:.2f})"),
             row("(e') the same with the update eager (`ppo.compile=false ppo.compile_step=false`)",
                 lambda t: f"{t['eager_fps']:,.0f}"),
             row("(f) whole iteration, `cpu` preset (8 envs x 1000 steps in one process)",
                 lambda t: f"{t['old_fps']:,.0f}"),
             row("(g) whole iteration, the default preset on TorchRL's standard env path",
                 lambda t: f"{t['torchrl_fps']:,.0f}"),
             row("e / bound, e / e', e / f, e / g",
                 lambda t: f"**{t['ours_over_bound']:.2f}**, {t['ours_over_eager']:.2f}, **{t['ours_over_old']:.2f}**, "
                           f"{t['ours_over_torchrl']:.2f}"),
             row("bound / f: the most e / f can be on this machine", lambda t: f"{t['bound_over_old']:.2f}")]
    return "\n".join(lines)


def throughput_runs() -> str:
    """performance.md: cheetah-run in every saved train_throughput.py run (the same training code), latest last."""
    lines = ["| run | raw (a) | collection (b) | matmul (c) | bound | e | e / bound | e / f | e / g | compiled / eager |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for path in runs_of("train_throughput_2core_run"):
        r = last_json(path)
        lines.append(f"| {run_name(path).removeprefix('run ')} | {r['raw_fps']:,.0f} | {r['ours_collect_fps']:,.0f} | "
                     f"{r['matmul_gflops']:.0f} | {r['bound_fps']:,.0f} | {r['ours_fps']:,.0f} | "
                     f"{r['ours_over_bound']:.2f} | {r['ours_over_old']:.2f} | {r['ours_over_torchrl']:.2f} | "
                     f"{r['ours_over_eager']:.2f} |")
    return "\n".join(lines)


def update_parts() -> str:
    """performance.md: where one update's time goes, from the latest ``update_parts.py --profile`` output."""
    path = BENCH / "update_parts_2core_critic2x256_profile.txt"
    text = path.read_text()
    updates = re.findall(r"update \d+: (\d+) ms, ([\d,]+) env steps/s; ms per minibatch: (.*)", text)
    parts = [dict((k, float(v)) for k, v in (p.split() for p in per.split(", "))) for _, _, per in updates]
    ranges = ", ".join(f"{name} {min(p[name] for p in parts):.2f}-{max(p[name] for p in parts):.2f}"
                       for name in parts[0])
    matmul = re.search(r"500 rows (\d+), 4096 rows (\d+)", text).groups()
    critic = re.search(r"GFLOP/s: eager (\d+), compiled (\d+)", text).groups()
    share = sum(float(m) for m in re.findall(r"aten::(?:mm|addmm)\s+([\d.]+)%", text))
    ms = [int(u[0]) for u in updates]
    return (f"{rel(path)}: {len(updates)} updates of 8,000 env steps took {min(ms):,}-{max(ms):,} ms. Milliseconds "
            f"per 500-row minibatch: {ranges}. Matmuls (`aten::mm`, `aten::addmm`) are {share:.0f}% of the profiled "
            f"update's CPU time. On the same cores a 256 x 256 matmul runs at {matmul[0]} GFLOP/s on 500 rows and "
            f"{matmul[1]} on 4,096; the bare critic's forward and backward on 500 rows at {critic[0]} (eager) and "
            f"{critic[1]} (compiled).")


def update_ab() -> str:
    """performance.md: ``update_parts.py --ab``, whole updates from the same state, per saved run."""
    saved = runs_of("update_parts_2core_ab_run")
    pattern = re.compile(r"^  (\S.*?)\s+first\s+([\d.]+) s\s+median\s+(\d+) ms\s+\S+ / this ([\d.]+)\s+"
                         r"max \|weight - \S+\| (\S+)$", re.M)
    results = [pattern.findall(p.read_text()) for p in saved]
    names = ["the standard step (compiled losses, autograd, eager clip and fused Adam)",
             "the losses compiled with inductor's `cpp_wrapper`", "the clip and the Adam step compiled apart",
             "`ppo.compile_step`: the whole minibatch step in one graph (the preset's)"]
    runs = " / ".join(run_name(p).removeprefix("run ") for p in saved)
    lines = [f"| variant (`update_parts_2core_ab_run*.txt`, runs {runs}) | first update (its compile) | median update "
             "| standard / variant, paired median | largest weight difference after one update |",
             "|---|---|---|---|---|"]
    for i, name in enumerate(names):
        cells = [[r[i][1] + " s" for r in results], [r[i][2] + " ms" for r in results], [r[i][3] for r in results]]
        diff = max(float(r[i][4]) for r in results)
        lines.append(f"| {name} | {' / '.join(cells[0])} | {' / '.join(cells[1])} | {' / '.join(cells[2])} | "
                     f"{diff:.1e} |")
    return "\n".join(lines)


def minibatch_step() -> str:
    """performance.md: ``minibatch_step.py``, one minibatch step in plain torch run three ways."""
    path = BENCH / "minibatch_step_2core.txt"
    lines = ["| run | eager | compiled losses | one graph | compiled losses / one graph | matmuls alone |",
             "|---|---|---|---|---|---|"]
    for run in re.split(r"^# run ", path.read_text(), flags=re.M)[1:]:
        ms = dict(re.findall(r"^  (eager|compiled losses|one graph)\s+([\d.]+) ms", run, flags=re.M))
        alone = re.search(r"matmuls alone would take ([\d.]+) ms", run).group(1)
        lines.append(f"| {run.split()[0]} | {ms['eager']} ms | {ms['compiled losses']} ms | {ms['one graph']} ms | "
                     f"{float(ms['compiled losses']) / float(ms['one graph']):.2f} | {alone} ms |")
    return "\n".join(lines + ["", f"From {rel(path)}."])


def collection() -> str:
    """performance.md: ``collect_throughput.py``: each saved run's summary, then every configuration of the latest."""
    saved = runs_of("collect_throughput_2core_run")
    summary = re.compile(r"^([a-z_-]+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)$", re.M)
    lines = ["| task (run) | raw, 1 process | raw, 2 processes | TorchRL's standard path (best) | ours (best) | "
             "ours / raw (2 processes) | ours / TorchRL |", "|---|---|---|---|---|---|---|"]
    for path in reversed(saved):
        for task, *cells in summary.findall(path.read_text()):
            numbers = [f"{int(c):,}" for c in cells[:4]]
            lines.append(f"| {task} ({run_name(path)}) | {' | '.join(numbers)} | {cells[4]} | {cells[5]} |")
    latest = saved[-1].read_text()
    per_task = re.findall(r"^(\S+): frames per second of every configuration.*\n((?:  .*\n)+)", latest, re.M)
    configs = [dict((name.strip(), int(fps)) for name, fps in re.findall(r"^  (.*?)\s+(\d+)$", body, re.M))
               for _, body in per_task]
    lines += ["", f"Every configuration in {rel(saved[-1])}, env steps/s:", "",
              "| configuration | " + " | ".join(task for task, _ in per_task) + " |", "|---|" + "---|" * len(per_task)]
    lines += [f"| {re.sub(r'^(torchrl|ours) +', lambda m: m.group(1) + ' ', name)} | "
              + " | ".join(f"{c[name]:,}" for c in configs) + " |" for name in configs[0]]
    training = re.findall(r"env_backend=(\w+)\s+(\d+) env steps/s", latest)
    lines += ["", "Whole training iterations of the `cpu` preset on cheetah-run (8 envs x 1000 steps, then the update), "
              "same run: " + ", ".join(f"`collector.env_backend={b}` {int(fps):,} env steps/s" for b, fps in training)
              + "."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- settings and other docs


def preset_unrolls() -> str:
    """performance.md: GoRL's cheetah-run stage 0 with 32 x 250 against 64 x 125 unrolls (and the `cpu` grid)."""
    sources = (("32 envs x 250 steps (the preset's unrolls)", "time_to_score_critic5x256"),
               ("64 envs x 125 steps", "time_to_score_64x125"), ("`cpu` preset: 8 full episodes", "learning"))
    lines = ["| batch of 8,000 env steps | `results/` | end of stage 0, seeds 1 / 2 / 3 (mean) |", "|---|---|---|"]
    for label, name in sources:
        ends = []
        for k in (1, 2, 3):
            path = ROOT / "results" / name / "cheetah-run" / "gorl_flow" / f"seed{k}" / "eval.csv"
            rows = [r for r in csv.DictReader(path.read_text().splitlines()) if r["stage"] == "0"]
            ends.append(float(rows[-1]["return_mean"]))
        lines.append(f"| {label} | `{name}` | {seeds_cell(ends)} ({sum(ends) / len(ends):.0f}) |")
    return "\n".join(lines)


def ray_overhead() -> str:
    """scaling.md: the latest ``ray_overhead.py`` run."""
    path = runs_of("ray_overhead_2core_run")[-1]
    data = last_json(path)
    found = re.findall(r"^(\S+)\s+(\d+ x \d+)\s+(local|ray)\s+(\d+) env steps/s\s+weight sync\s+([\d.]+) ms\s+"
                       r"ready\s+([\d.]+) s", path.read_text(), re.M)
    rows = {(task, envs, backend): (int(fps), sync, ready) for task, envs, backend, fps, sync, ready in found}
    lines = [f"{rel(path)}, load average {data['load_before']:.1f} before and {data['load_after']:.1f} after; env "
             "steps per second of collection + weight sync:", "",
             "| task, envs | MultiSyncCollector | Ray backend | Ray / MultiSync | weight sync (MultiSync / Ray) | "
             "ready to collect (MultiSync / Ray) |", "|---|---|---|---|---|---|"]
    for task, envs in dict.fromkeys((task, envs) for task, envs, _ in rows):
        local, ray = rows[(task, envs, "local")], rows[(task, envs, "ray")]
        lines.append(f"| {task}, {envs} | {local[0]:,} | {ray[0]:,} | {ray[0] / local[0]:.2f} | "
                     f"{local[1]} / {ray[1]} ms | {local[2]} / {ray[2]} s |")
    return "\n".join(lines)


def gorl_stages() -> str:
    """results.md: the best evaluation of each GoRL stage per task and seed, and the final (fresh) evaluation."""
    _, runs = modules()
    lines = ["| task | decoder | seed | best evaluation in stage 0 / 1 / 2 / 3 | best stage | final (fresh) |",
             "|---|---|---|---|---|---|"]
    grid = ROOT / "results" / "learning"
    saved = runs.load_runs(grid)
    for task in sorted(saved):
        for method in ("gorl_flow", "gorl_diffusion"):
            for seed, stages in runs.stage_points(task, method, grid).items():
                bests = [max(r for _, r in stages[k]) for k in sorted(stages)]
                final = saved[task][method][seed][2]["final_return"]
                lines.append(f"| {task} | {method.removeprefix('gorl_')} | {seed.removeprefix('seed')} | "
                             f"{seeds_cell(bests)} | {bests.index(max(bests))} | {final:.0f} |")
    return "\n".join(lines)


def offline() -> str:
    """results.md: the offline GMPO and GMPG runs on stage 0's data of the weighted-refit cheetah-run run."""
    base = ROOT / "results" / "offline" / "cheetah-run"
    labels = {"gmpo_beta0": "GMPO, `policy.beta=0` (every weight 1: flow behaviour cloning)",
              "gmpo_beta1": "GMPO, beta 1 (IQL advantages)", "gmpg": "GMPG (beta 4, exact divergence)"}
    lines = ["| run (`results/offline/cheetah-run/`) | behaviour flow | evaluations during training (policy steps) | "
             "final (fresh episodes) |", "|---|---|---|---|"]
    for name, label in labels.items():
        rows = list(csv.DictReader((base / name / "eval.csv").read_text().splitlines()))
        summary = json.loads((base / name / "summary.json").read_text())
        behaviour = next((f"{float(r['return_mean']):.0f}" for r in rows if r["phase"] == "behaviour"), "-")
        policy = [r for r in rows if r["phase"] == "policy"]
        during = (", ".join(f"{float(r['return_mean']):.0f}" for r in policy)
                  + f" ({int(policy[0]['step']):,}-{int(policy[-1]['step']):,})")
        lines.append(f"| {label} | {behaviour} | {during} | {summary['final_return']:.0f} ± "
                     f"{summary['final_return_std']:.0f} |")
    data = json.loads((base / "gmpo_beta0" / "summary.json").read_text())
    _, runs = modules()
    stage0 = runs.stage_points("cheetah-run", "gorl_flow_weighted", ROOT / "results" / "learning")["seed1"][0]
    lines += ["", f"The dataset: {data['dataset_transitions']:,} transitions, {data['dataset_episodes']} complete "
              f"episodes of stochastic latents through the identity decoder, return {data['dataset_return_mean']:.0f} ± "
              f"{data['dataset_return_std']:.0f}; the same encoder evaluated deterministically: "
              f"{max(r for _, r in stage0):.0f}."]
    return "\n".join(lines)


def playground_cpu() -> str:
    """playground.md: CheetahRun on CPU per physics engine (``benchmarks/results/playground_cpu_2core.csv``)."""
    path = BENCH / "playground_cpu_2core.csv"
    rows = list(csv.DictReader(line for line in path.read_text().splitlines() if not line.startswith("#")))
    lines = ["| impl | envs | compile (build + first reset + first step) | env steps/s | one reset |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['impl']} | {r['envs']} | {r['compile']} | {r['env_steps_per_s']} | {r['reset']} |" for r in rows]
    return "\n".join(lines)


def swiss_roll() -> str:
    """generative_rl.rst: the Swiss roll's mean values (``results/swiss_roll/swiss_roll.json``)."""
    data = json.loads((ROOT / "results" / "swiss_roll" / "swiss_roll.json").read_text())
    return (f"Measured with ``{data['command']}`` (``results/swiss_roll/swiss_roll.json`` and ``.png``, 2-core CPU): "
            f"mean value of the data {data['data_mean_value']:.2f}, of the behaviour flow's samples "
            f"{data['behaviour (flow matching)_mean_value']:.2f}, of GMPO's {data['GMPO_mean_value']:.2f}, of "
            f"GMPG's {data['GMPG_mean_value']:.2f}.")


# --------------------------------------------------------------------------------------------- all blocks


def blocks() -> dict[tuple[pathlib.Path, str], str]:
    """Every generated block of README.md and docs/, by (file, name), as its owner rebuilds it."""
    hopper, runs = modules()
    performance, results = DOCS / "performance.md", DOCS / "results.md"
    own = {
        (README, "default-command"): default_command,
        (performance, "default-runs"): default_runs,
        (performance, "train-throughput"): throughput_table,
        (performance, "train-throughput-runs"): throughput_runs,
        (performance, "update-parts"): update_parts,
        (performance, "update-ab"): update_ab,
        (performance, "minibatch-step"): minibatch_step,
        (performance, "collection"): collection,
        (performance, "preset-unrolls"): preset_unrolls,
        (DOCS / "scaling.md", "ray-overhead"): ray_overhead,
        (results, "gorl-stages"): gorl_stages,
        (results, "offline"): offline,
        (DOCS / "playground.md", "playground-cpu"): playground_cpu,
        (DOCS / "generative_rl.rst", "swiss-roll"): swiss_roll,
    }
    out = {key: build() for key, build in own.items()}
    out[(results, runs.GRID_BLOCK)] = runs.grid_table(runs.load_runs(ROOT / "results" / "learning"))
    out[(performance, runs.TTS_BLOCK)] = "\n".join(runs.time_to_score_lines())
    out.update(hopper.blocks())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="list stale blocks and change nothing")
    args = parser.parse_args()
    stale = []
    for (path, name), body in blocks().items():
        if read_block(path, name) == body:
            continue
        stale.append(f"{path.relative_to(ROOT)}: {name}")
        if not args.check:
            write_block(path, name, body)
    print("\n".join(("stale: " if args.check else "updated: ") + s for s in stale) or "every block is up to date")
    if args.check:
        sys.exit(1 if stale else 0)
    plot_default_command()


if __name__ == "__main__":
    main()
