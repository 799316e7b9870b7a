"""Learning-curve runs for docs/results.md: run the grid, then rebuild the tables and plots from the saved CSVs.

    python benchmarks/learning_runs.py run --tasks cheetah-run finger-spin hopper-stand --seeds 1 2 3 --jobs 2
    python benchmarks/learning_runs.py status         # how far each run in outputs/learning/ has got
    python benchmarks/learning_runs.py table          # docs/results.md's grid block and docs/img/*.png from results/
    python benchmarks/learning_runs.py run --results time_to_score --preset cpu_fast --tasks finger-spin \\
        --methods gorl_flow ppo_gaussian --seeds 1 2 3 schedule.num_stages=2 'schedule.stage_frames=[928000,928000]' \\
        eval.target_return=600   # the cpu_fast preset's runs for the time-to-score table: at most its first two
                                 # stages, ended at the threshold (400 for cheetah-run); one run at a time
    python benchmarks/learning_runs.py time-to-score  # that table, in docs/performance.md
    python benchmarks/docblocks.py                    # every generated block of README.md and docs/
    python benchmarks/learning_runs.py stages cheetah-run gorl_flow   # first / best / last eval of each stage
    python benchmarks/learning_runs.py stages cheetah-run gorl_flow --results time_to_score   # of other saved runs
    python benchmarks/learning_runs.py summaries --results default_preset   # final / best / last return, minutes
    python benchmarks/learning_runs.py train-log finger-spin fpo 1 cfm_loss   # a run's train/ scalars to CSV

Each run's ``eval.csv`` and ``summary.json`` are copied to ``results/learning/<task>/<method>/seed<k>/`` (small,
committed); everything else stays in ``outputs/``. Methods: ``gorl_flow``, ``gorl_diffusion`` (gorl_ppo.py with
``decoder.type``), ``gorl_flow_weighted`` (``schedule.decoder_refit=weighted``), ``gorl_flow_clipped_refit``
(``refit.action_clip=3``), ``gorl_flow_long_refit`` (``refit.max_epochs=150``), ``ppo_gaussian``, ``fpo`` and
``dppo``, all at the same total env-step budget (the preset's).

The grid is longer than one working session on a small machine, so ``run`` picks up where it stopped: a run whose
saved ``command.txt`` equals the command it would run is skipped (``--rerun`` runs it again), and a run that was
interrupted continues from its last checkpoint (every 200k encoder steps; ``checkpoint.resume``; resuming is exact, see
``tests/test_sota.py``), so its results equal an uninterrupted run's.
"""
from __future__ import annotations

import argparse
import csv
import json
import pathlib
import shutil
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from torchrl_gorl.training import latest_checkpoint

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from docblocks import ROOT, write_block  # noqa: E402

RESULTS = ROOT / "results" / "learning"  # --results NAME: results/NAME, runs in outputs/NAME
OUTPUTS = ROOT / "outputs" / "learning"
METHODS = {
    "gorl_flow": ("gorl_ppo.py", ["decoder.type=flow"]),
    "gorl_diffusion": ("gorl_ppo.py", ["decoder.type=diffusion"]),
    "gorl_flow_weighted": ("gorl_ppo.py", ["decoder.type=flow", "schedule.decoder_refit=weighted"]),
    # hopper-stand's remedy: refits fit to the pre-tanh actions clamped to +-3, where tanh is 0.995
    "gorl_flow_clipped_refit": ("gorl_ppo.py", ["decoder.type=flow", "refit.action_clip=3"]),
    # hopper-stand's first remedy candidate (seed 1 only): refits that run on while 30 epochs still improve
    "gorl_flow_long_refit": ("gorl_ppo.py", ["decoder.type=flow", "refit.max_epochs=150"]),
    "ppo_gaussian": ("ppo_gaussian.py", []),
    "fpo": ("fpo.py", []),
    "dppo": ("dppo.py", []),
}
# ablations beside the grid: they may stop short of the grid's budget without shortening the table's columns
ABLATIONS = ("gorl_flow_weighted", "gorl_flow_clipped_refit", "gorl_flow_long_refit")
LABELS = {"gorl_flow": "GoRL (flow)", "gorl_diffusion": "GoRL (diffusion)",
          "gorl_flow_weighted": "GoRL (flow, GMPO-weighted refit)",
          "gorl_flow_clipped_refit": "GoRL (flow, refits on clamped actions)",
          "gorl_flow_long_refit": "GoRL (flow, 150-epoch refits)", "ppo_gaussian": "Gaussian PPO",
          "fpo": "FPO", "dppo": "DPPO"}
# the paper's curves read off its figure (shared/reference/paper-results.md), encoder env steps only, +-30
PAPER = {
    "cheetah-run": {"gorl_flow": (310, 500, 730, 880), "gorl_diffusion": (300, 485, 730, 900), "ppo_gaussian": (190, 350, 540, 670), "fpo": (460, 680, 810, 780), "dppo": (45, 100, 210, 575)},
    "finger-spin": {"gorl_flow": (330, 600, 835, 905), "gorl_diffusion": (310, 520, 720, 810), "ppo_gaussian": (120, 290, 550, 490), "fpo": (300, 510, 640, 70), "dppo": (15, 50, 200, 690)},
    "hopper-stand": {"gorl_flow": (80, 230, 650, 740), "gorl_diffusion": (35, 95, 320, 880), "ppo_gaussian": (30, 60, 135, 280), "fpo": (15, 35, 90, 0), "dppo": (0, 0, 0, 0)},
    "finger-turn_hard": {"gorl_flow": (440, 690, 800, 870), "gorl_diffusion": (440, 690, 790, 870), "ppo_gaussian": (310, 540, 740, 650), "fpo": (390, 610, 800, 760), "dppo": (190, 290, 430, 650)},
    "fish-swim": {"gorl_flow": (220, 400, 570, 640), "gorl_diffusion": (220, 400, 580, 600), "ppo_gaussian": (105, 205, 445, 450), "fpo": (270, 430, 550, 230), "dppo": (90, 100, 110, 130)},
    "walker-walk": {"gorl_flow": (330, 590, 830, 880), "gorl_diffusion": (330, 560, 800, 860), "ppo_gaussian": (160, 320, 590, 820), "fpo": (430, 730, 870, 30), "dppo": (50, 70, 110, 320)},
}
PAPER_STEPS = ("15M", "30M", "60M", "180M")
RESULTS_MD, PERFORMANCE_MD = ROOT / "docs" / "results.md", ROOT / "docs" / "performance.md"
# FPO late collapse: returns stay under this fraction of the run's best (a best of at least COLLAPSE_MIN_BEST), and
# the CFM loss of the taken actions that marks the blow-up (at most 3.1 in every saved run outside a collapse;
# baselines.md §1.7)
COLLAPSE_FRACTION, COLLAPSE_MIN_BEST, CFM_BLOW_UP = 0.1, 100.0, 10.0


def run_dir_of(task: str, method: str, seed: int) -> pathlib.Path:
    return OUTPUTS / task / method / f"seed{seed}"


# checkpoints inside stages too, so an interrupted run loses at most this many encoder steps; results do not
# depend on it (checkpoint options may differ on resume), so it is left out when commands are compared
CHECKPOINT_EVERY = "checkpoint.interval_frames=200000"


def command_of(task: str, method: str, seed: int, preset: str, overrides: list[str]) -> list[str]:
    script, extra = METHODS[method]
    checkpointing = [] if any(o.startswith("checkpoint.") for o in overrides) else [CHECKPOINT_EVERY]
    return [sys.executable, str(ROOT / "sota-implementations" / script), f"preset={preset}", f"env.task={task}",
            f"env.seed={seed}", f"hydra.run.dir={run_dir_of(task, method, seed)}", "logger.progress_bar=false",
            *extra, *overrides, *checkpointing]


def recorded(cmd: list[str]) -> str:
    """The command as ``command.txt`` stores it: no interpreter, paths relative to the repository."""
    return " ".join(cmd[1:]).replace(str(ROOT) + "/", "")


def same_run(saved: str, cmd: list[str]) -> bool:
    """Whether a saved command is ``cmd`` up to checkpoint options (which do not change results)."""
    def key(words: list[str]) -> list[str]:
        return [w for w in words if not w.startswith("checkpoint.")]
    return key(saved.split()) == key(recorded(cmd).split())


def plan(cmd: list[str], run_dir: pathlib.Path, target: pathlib.Path, rerun: bool = False) -> tuple[str, list[str]]:
    """What ``run`` does for one grid point: ``("skip", [])``, ``("resume", [override])`` or ``("fresh", [])``.

    Skipped: results saved by the same command. Resumed: a checkpoint left in the run directory by an
    interrupted run (no ``summary.json`` after it). A finished or foreign run directory starts afresh.
    """
    saved = target / "command.txt"
    if not rerun and saved.exists() and same_run(saved.read_text().splitlines()[0], cmd):
        return "skip", []
    if not rerun and unfinished(run_dir):
        return "resume", [f"checkpoint.resume={run_dir / 'checkpoints'}"]
    return "fresh", []


def unfinished(run_dir: pathlib.Path) -> bool:
    """A checkpoint newer than the run's ``summary.json`` (or none): the run is going on or was interrupted."""
    checkpoint, summary = latest_checkpoint(run_dir / "checkpoints"), run_dir / "summary.json"
    return checkpoint is not None and (not summary.exists() or summary.stat().st_mtime < checkpoint.stat().st_mtime)


def prepare(run_dir: pathlib.Path, action: str) -> None:
    """A fresh run replaces the old one's CSV logs, so that ``status`` counts the new run's steps only."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    if action == "fresh":  # the old run's logs and checkpoints (a fresh run refuses to mix with them)
        for part in ("logs", "checkpoints"):
            shutil.rmtree(run_dir / part, ignore_errors=True)


def run_one(task: str, method: str, seed: int, preset: str, overrides: list[str], rerun: bool = False) -> str:
    cmd = command_of(task, method, seed, preset, overrides)
    run_dir, target = run_dir_of(task, method, seed), RESULTS / task / method / f"seed{seed}"
    action, extra = plan(cmd, run_dir, target, rerun)
    if action == "skip":
        return f"skipped (saved by the same command) {target.relative_to(ROOT)}"
    prepare(run_dir, action)
    with open(run_dir.parent / f"seed{seed}.log", "a" if action == "resume" else "w") as log:
        subprocess.run(cmd + extra, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    target.mkdir(parents=True, exist_ok=True)
    for name in ("eval.csv", "summary.json"):
        shutil.copy(run_dir / name, target / name)
    # the command of the whole run and the commit it ran at; a resumed run ends where the uninterrupted one does
    note = "" if action == "fresh" else "# interrupted, then resumed from its last checkpoint (checkpoint.resume)\n"
    (target / "command.txt").write_text(f"{recorded(cmd)}\n# at commit {commit()}\n{note}")
    return f"saved ({action}) {target.relative_to(ROOT)}"


def commit() -> str:
    """The checkout's commit, with ``+changes`` when the work tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    sha = git("rev-parse", "HEAD") or "unknown"
    return sha + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def env_steps_reached(run_dir: pathlib.Path) -> float:
    """The largest env-step count logged by any of the run's CSV loggers.

    A resumed run logs into a new ``logs/<name>`` directory and keeps counting from its checkpoint, so the count
    is the maximum over all of them (log directory names are not ordered by time).
    """
    last_rows = (p.read_text().strip().splitlines()[-1:] for p in run_dir.glob("logs/*/scalars/frames/total.csv"))
    return max((float(row[0].split(",")[-1]) for row in last_rows if row), default=0.0)


def status() -> None:
    """Env steps reached by each run in outputs/learning/ (from its CSV logs), finished or not."""
    for run_dir in sorted(d for d in OUTPUTS.glob("*/*/seed*") if d.is_dir()):
        done = (run_dir / "summary.json").exists() and not unfinished(run_dir)
        state = "finished" if done else "running or interrupted"
        steps = env_steps_reached(run_dir) / 1e6
        print(f"{run_dir.relative_to(OUTPUTS)}: {steps:.2f}M env steps, {state}")


def summaries(results: pathlib.Path | None = None) -> list[str]:
    """Per saved run: its final return (fresh episodes), best and last evaluation, env steps and training minutes,
    then mean and spread over the seeds of each task and method (of ``results``, by default the ``--results`` runs)."""
    lines, groups = [], {}
    for path in sorted((results or RESULTS).glob("*/*/seed*/summary.json")):
        summary = json.loads(path.read_text())
        rows = list(csv.DictReader((path.parent / "eval.csv").read_text().splitlines()))
        last = float(rows[-1]["return_mean"])
        minutes = float(summary["wall_time_train_s"]) / 60 if "wall_time_train_s" in summary else float("nan")
        values = (summary["final_return"], summary["best_eval_return"], last, minutes)
        groups.setdefault(path.parts[-4:-2], []).append(values)
        lines.append(f"{'/'.join(path.parts[-4:-1])}: final {summary['final_return']:.0f}, best "
                     f"{summary['best_eval_return']:.0f}, last {last:.0f} at {summary['frames_total'] / 1e6:.2f}M env "
                     f"steps, {minutes:.1f} min of training")
    for (task, method), values in groups.items():
        final, best, last, minutes = np.array(values).T
        spread = [f"{name} {col.mean():.0f} +- {col.std(ddof=1) if len(col) > 1 else 0:.0f} "
                  f"({col.min():.0f}-{col.max():.0f})" for name, col in (("final", final), ("best", best), ("last", last))]
        lines.append(f"{task}/{method} ({len(values)} seeds): {', '.join(spread)}, "
                     f"minutes {minutes.mean():.1f} ({minutes.min():.1f}-{minutes.max():.1f})")
    return lines


def train_log(run_dir: pathlib.Path, names: list[str]) -> list[list[float]]:
    """Rows ``[step, *values]`` of the named ``train/`` scalars over all of a run's CSV logs.

    A resumed run re-logs the iterations after its checkpoint in a new log directory, which therefore starts at a
    later step than the one before it; segments are merged in that order (not by file times, which a copy resets),
    so the resumed run's value is the one kept for a step logged twice.
    """
    segments = []
    for log in run_dir.glob("logs/*"):
        rows = {}
        for name in names:
            path = log / "scalars" / "train" / f"{name}.csv"
            lines = path.read_text().split() if path.exists() else []
            rows[name] = [tuple(map(float, line.split(","))) for line in lines]
        steps = [step for series in rows.values() for step, _ in series]
        if steps:
            segments.append((min(steps), rows))
    columns: dict[float, dict[str, float]] = {}
    for _, rows in sorted(segments, key=lambda segment: segment[0]):
        for name, series in rows.items():
            for step, value in series:
                columns.setdefault(step, {})[name] = value
    return [[step] + [values.get(name, float("nan")) for name in names] for step, values in sorted(columns.items())]


def export_train_log(task: str, method: str, seed: int, names: list[str]) -> pathlib.Path:
    """Save the named training diagnostics of a run next to its eval.csv (small; they back numbers in results.md)."""
    run_dir = run_dir_of(task, method, seed)
    rows = train_log(run_dir, names)
    if not rows:
        raise FileNotFoundError(f"no train/{{{','.join(names)}}} scalars under {run_dir}/logs")
    target = RESULTS / task / method / f"seed{seed}" / "train_log.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="") as f:
        csv.writer(f).writerows([["frames_total", *names], *rows])
    return target


def load_runs(results: pathlib.Path | None = None) -> dict:
    """``{task: {method: {"seed<k>": (env steps, returns, summary.json)}}}`` of the saved runs in ``results`` (by
    default the ``--results`` runs)."""
    runs: dict = {}
    for csv_path in sorted((results or RESULTS).glob("*/*/seed*/eval.csv")):
        task, method, seed = csv_path.parts[-4], csv_path.parts[-3], csv_path.parts[-2]
        with open(csv_path) as f:
            rows = list(csv.DictReader(f))
        x = np.array([float(r["frames_total"]) for r in rows])
        y = np.array([float(r["return_mean"]) for r in rows])
        summary = json.loads((csv_path.parent / "summary.json").read_text())
        runs.setdefault(task, {}).setdefault(method, {})[seed] = (x, y, summary)
    return runs


def curve_at(x: np.ndarray, y: np.ndarray, step: float) -> float:
    """Return of the last evaluation at or before ``step`` env steps; NaN outside the run (never carried past its end)."""
    idx = np.searchsorted(x, step, side="right") - 1
    return float(y[idx]) if 0 <= idx and step <= x[-1] else float("nan")


def fmt(values: list[float]) -> str:
    values = [v for v in values if not np.isnan(v)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.0f} (n=1)"
    return f"{np.mean(values):.0f} ± {np.std(values, ddof=1):.0f} (n={len(values)})"


def column_budget(methods: dict) -> float:
    """Env steps of the last table column: the budget every grid method of a task reached (ablations only if alone)."""
    grid = {m: seeds for m, seeds in methods.items() if m not in ABLATIONS} or methods
    return min(min(s["frames_total"] for _, _, s in seeds.values()) for seeds in grid.values())


def columns(seeds: dict, marks: list[float]) -> list[str]:
    """One table cell per mark over the seeds; a run that ended before a mark is left out there."""
    return [fmt([curve_at(x, y, m) for x, y, _ in seeds.values()]) for m in marks]


def stage_points(task: str, method: str,
                 results: pathlib.Path | None = None) -> dict[str, dict[int, list[tuple[float, float]]]]:
    """Per seed and stage: the (env steps in millions, return) evaluations from the committed eval.csv, in order
    (of ``results``, by default the ``--results`` runs)."""
    points: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for csv_path in sorted(((results or RESULTS) / task / method).glob("seed*/eval.csv")):
        with open(csv_path) as f:
            stages = points.setdefault(csv_path.parent.name, {})
            for r in csv.DictReader(f):
                stages.setdefault(int(r["stage"]), []).append((float(r["frames_total"]) / 1e6, float(r["return_mean"])))
    return points


def stage_evals(task: str, method: str) -> list[str]:
    """Per seed and stage: first, best and last evaluation (env steps and return), as ``stages`` prints them."""
    lines = []
    for seed, stages in stage_points(task, method).items():
        for stage, ret in sorted(stages.items()):
            best = max(ret, key=lambda point: point[1])
            lines.append(f"{seed} stage {stage}: first {ret[0][1]:.0f} @ {ret[0][0]:.2f}M, "
                         f"best {best[1]:.0f} @ {best[0]:.2f}M, last {ret[-1][1]:.0f} @ {ret[-1][0]:.2f}M")
    return lines


def run_column(task: str, method: str, seed: int, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Env steps (millions) and values of one column of a committed run's ``train_log.csv``, or else its ``eval.csv``."""
    run = RESULTS / task / method / f"seed{seed}"
    for name in ("train_log.csv", "eval.csv"):
        if (run / name).exists():
            with open(run / name) as f:
                rows = list(csv.DictReader(f))
            if rows and column in rows[0]:
                break
    else:
        raise ValueError(f"no column {column!r} in {run}/train_log.csv or eval.csv")
    return np.array([float(r["frames_total"]) / 1e6 for r in rows]), np.array([float(r[column]) for r in rows])


def window_values(steps: np.ndarray, values: np.ndarray, edges: list[float]) -> list[tuple[float, float, np.ndarray]]:
    """``(start, end, values)`` per env-step window.

    ``edges`` are in millions of env steps; the run's start and end are added and empty windows dropped.
    """
    bounds = [steps.min(), *sorted(edges), np.nextafter(steps.max(), np.inf)]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        inside = (steps >= lo) & (steps < hi)
        if inside.any():
            out.append((lo, min(hi, steps.max()), values[inside]))
    return out


def first_above(values: np.ndarray, threshold: float) -> int | None:
    """Index of the first value above ``threshold``, or None."""
    hit = np.flatnonzero(values > threshold)
    return int(hit[0]) if hit.size else None


def saved_cfm_loss(task: str, method: str, seed: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``run_column(..., "cfm_loss")`` for a ``load_runs`` seed key (``"seed2"``); None for a run without the log."""
    try:
        return run_column(task, method, int(seed.removeprefix("seed")), "cfm_loss")
    except ValueError:
        return None


def windows(task: str, method: str, seed: int, column: str, edges: list[float],
            above: list[float] = ()) -> list[str]:
    """Min / median / max of one column of a committed run CSV per env-step window, and where it first exceeds values.

    ``column`` is looked up as by :func:`run_column` (e.g. ``cfm_loss`` or ``return_max``); ``edges`` as by
    :func:`window_values`.
    """
    steps, values = run_column(task, method, seed, column)
    lines = [f"{column} {lo:.2f}-{hi:.2f}M: n {v.size}, min {v.min():.3g}, median {np.median(v):.3g}, max {v.max():.3g}"
             for lo, hi, v in window_values(steps, values, edges)]
    for value in above:
        hit = first_above(values, value)
        lines.append(f"{column} first above {value:g}: "
                     + (f"{values[hit]:.3g} @ {steps[hit]:.2f}M" if hit is not None else "never"))
    return lines


def collapse_step(steps: np.ndarray, returns: np.ndarray, fraction: float = COLLAPSE_FRACTION,
                  min_best: float = COLLAPSE_MIN_BEST) -> float:
    """First evaluation after a run's best from which every evaluation to the end is below ``fraction`` of that best.

    NaN when there is no such point, or when the best is under ``min_best`` (a run that never learned to do
    anything cannot collapse; on hopper-stand's ground-level returns 0-22 the ratio would be noise).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    best = int(np.argmax(returns))
    if returns[best] < min_best:
        return float("nan")
    low = returns < fraction * returns[best]
    later = np.flatnonzero(~low[best:])  # the best itself is never low
    start = best + later[-1] + 1
    return float(steps[start]) if start < len(steps) else float("nan")


def collapse_rows(runs: dict, method: str = "fpo") -> list[str]:
    """Table rows, per task and seed of ``method``: best evaluation, where it collapsed, and its CFM loss blow-up."""
    rows = []
    for task, methods in sorted(runs.items()):
        for seed in sorted(methods.get(method, {})):
            x, y, _ = methods[method][seed]
            best, collapsed = int(np.argmax(y)), collapse_step(x, y)
            if y[best] < COLLAPSE_MIN_BEST:
                verdict = f"n/a (best under {COLLAPSE_MIN_BEST:g})"
            elif np.isnan(collapsed):
                verdict = "no"
            else:
                verdict = f"{collapsed / 1e6:.2f}M (then at most {y[x >= collapsed].max():.0f})"
            log = saved_cfm_loss(task, method, seed)
            if log is None:
                blow_up = "n/a"
            else:
                hit = first_above(log[1], CFM_BLOW_UP)
                blow_up = f"{log[0][hit]:.2f}M" if hit is not None else f"never (max {log[1].max():.2g})"
            rows.append(f"| {task} | {seed.removeprefix('seed')} | {y[best]:.0f} @ {x[best] / 1e6:.2f}M | "
                        + f"{verdict} | {blow_up} |")
    return rows


def plot_collapse(runs: dict, path: pathlib.Path, method: str = "fpo") -> None:
    """Eval return and CFM loss of the taken actions of every saved ``method`` run, one column per task."""
    import matplotlib.pyplot as plt

    tasks = [t for t in sorted(runs) if method in runs[t]]
    fig, axes = plt.subplots(2, len(tasks), figsize=(3.6 * len(tasks), 5.2), sharex=True, squeeze=False)
    for col, task in enumerate(tasks):
        for seed, (x, y, _) in sorted(runs[task][method].items()):
            axes[0, col].plot(x / 1e6, y, label=seed)
            log = saved_cfm_loss(task, method, seed)
            if log is not None:
                axes[1, col].semilogy(*log, lw=0.8, label=seed)
        axes[0, col].set_title(f"{task}: {LABELS[method]}")
        axes[1, col].set_xlabel("env steps (M)")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("eval return")
    axes[1, 0].set_ylabel("CFM loss of taken actions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def grid_table(runs: dict) -> str:
    """docs/results.md's grid block: per task, the table at a quarter, half and all of the budget every grid method
    reached, then the FPO late-collapse table; the figures are ``plot_grid``'s."""
    lines = []
    for task, methods in sorted(runs.items()):
        budget = column_budget(methods)
        marks = [budget / 4, budget / 2, budget]
        lines += [f"### {task}", "",
                  "| method | run budget | " + " | ".join(f"{m / 1e6:.2f}M steps" for m in marks)
                  + " | final (fresh eval) | paper " + " / ".join(PAPER_STEPS) + " |",
                  "|---|---|" + "---|" * (len(marks) + 2)]
        for method in (m for m in METHODS if m in methods):
            seeds = methods[method]
            final = fmt([s["final_return"] for _, _, s in seeds.values()])
            paper = " / ".join(str(v) for v in PAPER.get(task, {}).get(method, ())) or "n/a"
            run_budget = "/".join(sorted({f"{s['frames_total'] / 1e6:.2f}M" for _, _, s in seeds.values()}))
            lines.append(f"| {LABELS[method]} | {run_budget} | " + " | ".join(columns(seeds, marks))
                         + f" | {final} | {paper} |")
        lines += ["", f"![{task}](img/learning_{task}.png)", ""]
    if any("fpo" in methods for methods in runs.values()):
        lines += ["### FPO: late collapse", "",
                  "Collapsed from: the first evaluation after the run's best from which every evaluation is below "
                  f"{COLLAPSE_FRACTION:.0%} of that best (best at least {COLLAPSE_MIN_BEST:g}). CFM loss: of the taken "
                  "pre-squash actions, per update (`train_log.csv`).", "",
                  f"| task | seed | best evaluation | collapsed from | CFM loss first above {CFM_BLOW_UP:g} |",
                  "|---|---|---|---|---|",
                  *collapse_rows(runs), "", "![FPO collapse](img/fpo_collapse.png)"]
    return "\n".join(lines).strip("\n")


def plot_grid(runs: dict, img: pathlib.Path) -> None:
    """``img/learning_<task>.png`` (mean and sample std over seeds per method) and ``img/fpo_collapse.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img.mkdir(parents=True, exist_ok=True)
    for task, methods in sorted(runs.items()):
        longest = max(max(s["frames_total"] for _, _, s in seeds.values()) for seeds in methods.values())
        fig, ax = plt.subplots(figsize=(6, 4))
        for method in (m for m in METHODS if m in methods):
            seeds = methods[method]
            grid = np.linspace(0, longest, 80)
            curves = np.array([[curve_at(x, y, g) for g in grid] for x, y, _ in seeds.values()])
            with np.errstate(invalid="ignore"), warnings.catch_warnings():  # grid points past every run's end
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, std = np.nanmean(curves, 0), np.nanstd(curves, 0, ddof=1)  # a single seed gets no band
            ax.plot(grid, mean, label=f"{LABELS[method]} (n={len(seeds)})")
            ax.fill_between(grid, mean - std, mean + std, alpha=0.2)
        ax.set_xlabel("env steps (encoder PPO + decoder data)")
        ax.set_ylabel("eval return")
        ax.set_title(task)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(img / f"learning_{task}.png", dpi=110)
        plt.close(fig)
    if any("fpo" in methods for methods in runs.values()):
        plot_collapse(runs, img / "fpo_collapse.png")


def make_table() -> None:
    """Rebuild docs/results.md's grid block and its figures from results/learning."""
    runs = load_runs(ROOT / "results" / "learning")
    plot_grid(runs, ROOT / "docs" / "img")
    write_block(RESULTS_MD, GRID_BLOCK, grid_table(runs))


GRID_BLOCK, TTS_BLOCK = "learning-grid", "time-to-score"
TTS_THRESHOLDS = {"cheetah-run": 400.0, "finger-spin": 600.0}
TTS_METHODS = ("gorl_flow", "ppo_gaussian")
THROUGHPUT_JSON = ROOT / "benchmarks" / "results" / "train_throughput.json"
# the table's columns: saved runs and whether their eval.csv has the measured wall-clock (the cpu_fast preset's runs;
# the preset before its one-graph PPO step, with compiled losses; before its critic of 2 x 256, with the reference's
# 5 x 256 critic and an eager collection policy) or it is estimated (the cpu preset's grid)
TTS_SOURCES = ((ROOT / "results" / "time_to_score", True), (ROOT / "results" / "time_to_score_compiled_losses", True),
               (ROOT / "results" / "time_to_score_critic5x256", True), (ROOT / "results" / "learning", False))


def time_to_score_rows() -> list[str]:
    """Wall-clock minutes of training until a run's deterministic evaluation first reaches the task's threshold.

    ``cpu_fast`` preset: ``wall_time_train_s`` of that ``eval.csv`` row in ``results/time_to_score`` (collection,
    updates, refits; evaluations excluded), and the same for the preset's earlier settings: compiled losses instead of
    the one-graph step in ``results/time_to_score_compiled_losses``, the reference's critic and an eager collection
    policy in ``results/time_to_score_critic5x256``. cpu preset: the env steps at which the saved 3.02M grid runs
    (``results/learning``, full-episode batches of 8 envs, several runs at a time) first reach it, at the old
    configuration's whole-iteration rate for the task measured by ``benchmarks/train_throughput.py``
    (``benchmarks/results/train_throughput.json``; refits and start-up not counted, which favours the cpu preset).
    """
    rates = {row["task"]: row for row in json.loads(THROUGHPUT_JSON.read_text())["tasks"]}
    lines = []
    for task, threshold in TTS_THRESHOLDS.items():
        for method in TTS_METHODS:
            cells = [" / ".join(reach_cell(results / task / method / f"seed{seed}" / "eval.csv", threshold,
                                           None if measured else rates[task]["old_fps"]) for seed in (1, 2, 3))
                     for results, measured in TTS_SOURCES]
            lines.append(f"| {task} | {threshold:.0f} | {LABELS[method]} | {' | '.join(cells)} |")
    return lines


def reach_cell(path: pathlib.Path, threshold: float, fps: float | None = None) -> str:
    """One run's time-to-score cell: training minutes (env steps) at its first evaluation at or above ``threshold``.

    Minutes are the row's measured ``wall_time_train_s``, or with ``fps`` its env steps / ``fps`` (an estimate).
    A run that never got there reads ``not in <its env steps> (<its minutes>; best <its best>)``; a missing
    ``eval.csv`` reads ``not run``.
    """
    if not path.exists():
        return "not run"
    rows = list(csv.DictReader(path.read_text().splitlines()))

    def minutes(row: dict) -> float:
        return (float(row["frames_total"]) / fps if fps else float(row["wall_time_train_s"])) / 60

    hit = next((r for r in rows if float(r["return_mean"]) >= threshold), None)
    if hit is None:
        best = max(float(r["return_mean"]) for r in rows)
        return f"not in {float(rows[-1]['frames_total']) / 1e6:.2f}M ({minutes(rows[-1]):.1f} min; best {best:.0f})"
    return f"{minutes(hit):.1f} ({float(hit['frames_total']) / 1e6:.2f}M)"


def time_to_score_lines() -> list[str]:
    """The time-to-score block of docs/performance.md: its note and table."""
    rates = json.loads(THROUGHPUT_JSON.read_text())
    old = ", ".join(f"{row['task']} {row['old_fps']:,.0f}" for row in rates["tasks"] if row["task"] in TTS_THRESHOLDS)
    saved = {w for path in TTS_SOURCES[0][0].glob("*/*/seed*/command.txt") for w in path.read_text().split()}
    words = sorted(w for w in saved if w.startswith("schedule."))
    # runs made as probes before their settings became the preset's name them as overrides; the preset's values now
    given = sorted(w for w in saved if w.startswith(("collector.", "encoder.", "ppo.")))
    given_text = (f"; their commands also give {' '.join(f'`{w}`' for w in given)}, the preset's "
                  f"{'value' if len(given) == 1 else 'values'} now"
                  if given else "")
    new = (f"cpu_fast: `results/time_to_score`, runs capped at {' '.join(f'`{w}`' for w in words) or 'the whole schedule'}"
           f"{given_text}. " if saved else "")
    lines = ["Training minutes (env steps) until the first deterministic evaluation at or above the threshold, seeds "
             f"1 / 2 / 3, measured (`wall_time_train_s`). {new}Compiled losses: the same with `ppo.compile_step=false` "
             "(`results/time_to_score_compiled_losses`); critic 5 x 256: also with the reference's critic and an eager "
             "collection policy (`results/time_to_score_critic5x256`). cpu preset: the 3.02M grid runs' env steps "
             f"divided by that configuration's measured loop rate (env steps/s: {old}), an estimate without refits.", "",
             "| task | threshold | method | cpu_fast preset: minutes (env steps) | cpu_fast, compiled losses | "
             "cpu_fast, critic 5 x 256 | cpu preset: minutes (env steps) |",
             "|---|---|---|---|---|---|---|", *time_to_score_rows()]
    return lines


def make_time_to_score_table() -> None:
    write_block(PERFORMANCE_MD, TTS_BLOCK, "\n".join(time_to_score_lines()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the grid and save the per-run CSVs")
    run.add_argument("--tasks", nargs="+", default=["cheetah-run", "finger-spin", "hopper-stand"])
    run.add_argument("--methods", nargs="+", default=["gorl_flow", "gorl_diffusion", "ppo_gaussian"], choices=list(METHODS))
    run.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    run.add_argument("--preset", default="cpu")
    run.add_argument("--jobs", type=int, default=1, help="runs at a time (one core each)")
    run.add_argument("--rerun", action="store_true", help="run again what is saved, start interrupted runs afresh")
    run.add_argument("--results", default="learning",
                     help="save to results/NAME (runs in outputs/NAME); only results/learning feeds docs/results.md")
    run.epilog = "Any argument of the form key=value is a hydra override for every run, wherever it stands."
    sub.add_parser("table", help="rebuild the table in docs/results.md and docs/img/ from results/")
    sub.add_parser("status", help="env steps reached by each run in outputs/learning/")
    summ = sub.add_parser("summaries", help="final, best and last return and training minutes of the saved runs")
    summ.add_argument("--results", default="learning", help="the saved runs of results/NAME")
    sub.add_parser("time-to-score", help="the time-to-score table in docs/performance.md from results/time_to_score")
    stages = sub.add_parser("stages", help="first / best / last evaluation of each stage of a method's saved runs")
    stages.add_argument("task")
    stages.add_argument("method", choices=list(METHODS))
    stages.add_argument("--results", default="learning", help="the saved runs of results/NAME")
    win = sub.add_parser("windows", help="min / median / max of a saved run's training or eval column per env-step window")
    win.add_argument("task")
    win.add_argument("method", choices=list(METHODS))
    win.add_argument("seed", type=int)
    win.add_argument("column", help="a train_log.csv scalar (e.g. cfm_loss) or an eval.csv column (return_mean)")
    win.add_argument("--edges", nargs="+", type=float, default=[], help="window bounds, millions of env steps")
    win.add_argument("--above", nargs="+", type=float, default=[], help="report where the column first exceeds these")
    log = sub.add_parser("train-log", help="save a run's training diagnostics to results/<task>/<method>/seed<k>/train_log.csv")
    log.add_argument("task")
    log.add_argument("method")
    log.add_argument("seed", type=int)
    log.add_argument("names", nargs="+", help="train/ scalars, e.g. cfm_loss clip_fraction kl_approx")
    log.add_argument("--results", default="learning", help="runs in outputs/NAME, saved to results/NAME")
    # hydra overrides are picked out first: nargs="+" options (--methods, --seeds) would swallow them
    argv = sys.argv[1:]
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    args = parser.parse_args([a for a in argv if a not in overrides])
    args.overrides = overrides
    if getattr(args, "results", "learning") != "learning":
        global RESULTS, OUTPUTS
        RESULTS, OUTPUTS = ROOT / "results" / args.results, ROOT / "outputs" / args.results
    if args.command == "table":
        make_table()
        return
    if args.command == "status":
        status()
        return
    if args.command == "summaries":
        print("\n".join(summaries()))
        return
    if args.command == "time-to-score":
        make_time_to_score_table()
        return
    if args.command == "stages":
        print("\n".join(stage_evals(args.task, args.method)))
        return
    if args.command == "windows":
        print("\n".join(windows(args.task, args.method, args.seed, args.column, args.edges, args.above)))
        return
    if args.command == "train-log":
        print(export_train_log(args.task, args.method, args.seed, args.names).relative_to(ROOT))
        return
    grid = [(t, m, s) for t in args.tasks for m in args.methods for s in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        for outcome in pool.map(lambda g: run_one(*g, args.preset, args.overrides, args.rerun), grid):
            print(outcome, flush=True)
    if RESULTS == ROOT / "results" / "learning":
        make_table()


if __name__ == "__main__":
    main()
