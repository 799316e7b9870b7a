"""GoRL against Gaussian PPO on hopper-stand at 15M env steps (``preset=cpu_fast_15m``): the runs, and the figure,
table, verdict and per-stage diagnosis in docs/results.md and the README, rebuilt from the committed runs.

    python benchmarks/learning_runs.py run --results hopper_15m --preset cpu_fast_15m --tasks hopper-stand \\
        --methods gorl_flow ppo_gaussian --seeds 1 2 3      # one run at a time, ~1 h each on 2 cores; resumable
    python benchmarks/learning_runs.py train-log hopper-stand gorl_flow 1 latent_scale_mean --results hopper_15m
    python benchmarks/hopper_15m.py report                   # docs/img/hopper_15m.png and the generated blocks
    python benchmarks/hopper_15m.py decoder outputs/hopper_15m/hopper-stand/gorl_flow/seed1 \\
        outputs/hopper_15m/hopper-stand/ppo_gaussian/seed1   # docs/img/hopper_decoder.png from the final checkpoints
    python benchmarks/hopper_15m.py boundaries outputs/hopper_15m/hopper-stand/gorl_flow/seed3 CHECKPOINTS
        # what each refit hands the next stage, from every checkpoint the run wrote (copied as they were written)

Every number in the blocks comes from ``results/hopper_15m/hopper-stand/<method>/seed<k>/`` (``eval.csv``,
``summary.json``, ``train_log.csv``); ``tests/test_docs_blocks.py`` checks the blocks against a regeneration.
"""
from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from docblocks import ROOT, write_block  # noqa: E402

RESULTS = ROOT / "results" / "hopper_15m" / "hopper-stand"
FIGURE = ROOT / "docs" / "img" / "hopper_15m.png"
DECODER_FIGURE = ROOT / "docs" / "img" / "hopper_decoder.png"
DECODER_STATS = RESULTS.parent / "decoder_actions.json"  # written by the decoder command with its figure
BOUNDARIES = RESULTS.parent / "stage_boundaries"  # <method>_seed<k>.json, written by the boundaries command
REFIT_BUDGET = RESULTS.parent / "refit_budget"  # <method>_seed<k>_stage<k>.json, written by hopper_refit.py
RESULTS_MD, README = ROOT / "docs" / "results.md", ROOT / "README.md"
METHODS = {"gorl_flow": "GoRL (flow)", "ppo_gaussian": "Gaussian PPO",
           "gorl_flow_clipped_refit": "GoRL (flow), refits on clamped actions",
           "gorl_flow_long_refit": "GoRL (flow), 150-epoch refits", "gorl_diffusion": "GoRL (diffusion)",
           "fpo": "FPO"}
COLORS = {"gorl_flow": "tab:blue", "ppo_gaussian": "tab:orange", "gorl_flow_clipped_refit": "tab:brown",
          "gorl_flow_long_refit": "tab:purple",
          "gorl_diffusion": "tab:green", "fpo": "tab:red"}
#: the paper's hopper-stand curves at 15M encoder env steps, read off its figure (+-30; shared/reference/paper-results.md)
PAPER_15M = {"gorl_flow": 80, "gorl_diffusion": 35, "fpo": 15, "ppo_gaussian": 30}
#: the remedy: refits fit to the decoder data's pre-tanh actions clamped to +-REMEDY_CLIP (tanh(3) = 0.995)
REMEDY_METHOD, REMEDY_CLIP = "gorl_flow_clipped_refit", 3.0
MARKS = (3e6, 7.5e6, 15e6)
SEEDS_PLANNED = 3


def load(method: str) -> dict[int, tuple[dict[str, np.ndarray], dict]]:
    """``{seed: (eval.csv columns as arrays, summary.json)}`` of the finished runs of ``method``."""
    runs = {}
    for summary_path in sorted((RESULTS / method).glob("seed*/summary.json")):
        with open(summary_path.parent / "eval.csv") as f:
            rows = list(csv.DictReader(f))
        columns = {key: np.array([float(r[key]) for r in rows]) for key in rows[0]}
        runs[int(summary_path.parent.name.removeprefix("seed"))] = (columns, json.loads(summary_path.read_text()))
    return runs


def value_at(columns: dict[str, np.ndarray], steps: float) -> float:
    """Return of the last evaluation at or before ``steps`` env steps (decoder data counted); NaN past the run."""
    x = columns["frames_total"]
    i = np.searchsorted(x, steps, side="right") - 1
    return float(columns["return_mean"][i]) if i >= 0 and steps <= x[-1] else float("nan")


def at_15m(runs: dict[int, tuple[dict[str, np.ndarray], dict]]) -> dict[int, float]:
    """``{seed: return at 15M env steps}`` of the runs that got there (:func:`value_at`)."""
    values = {seed: value_at(columns, 15e6) for seed, (columns, _) in runs.items()}
    return {seed: value for seed, value in values.items() if not np.isnan(value)}


def spread(values: list[float]) -> str:
    """``mean +- sd (n=k)``; sd over seeds with ddof=1."""
    values = [v for v in values if not np.isnan(v)]
    if len(values) < 2:
        return f"{values[0]:.0f} (n=1)" if values else "n/a"
    return f"{np.mean(values):.0f} ± {np.std(values, ddof=1):.0f} (n={len(values)})"


def table() -> str:
    header = ("| method | 3M | 7.5M | 15M | final, fresh episodes | best evaluation | training wall-clock (h) | "
              "paper at 15M |\n|---|---|---|---|---|---|---|---|")
    lines = [header]
    for method, label in METHODS.items():
        runs = load(method)
        if not runs:
            continue
        at = [spread([value_at(c, m) for c, _ in runs.values()]) for m in MARKS]
        final = spread([s["final_return"] for _, s in runs.values()])
        best = spread([s["best_eval_return"] for _, s in runs.values()])
        hours = [s["wall_time_train_s"] / 3600 for _, s in runs.values()]
        clock = f"{min(hours):.2f}" if len(hours) == 1 else f"{min(hours):.2f}-{max(hours):.2f}"
        paper = PAPER_15M.get(method, "–")
        lines.append(f"| {label} | {' | '.join(at)} | {final} | {best} | {clock} | {paper} |")
    return "\n".join(lines)


def verdict() -> str:
    """One sentence: GoRL (flow) against Gaussian PPO at 15M env steps, with n, spread and whether the difference
    exceeds it (mean +- sd intervals that do not overlap)."""
    gorl, ppo = load("gorl_flow"), load("ppo_gaussian")
    if not gorl or not ppo:
        return "The hopper-stand runs at 15M env steps are not finished yet."
    at = {"a": at_15m(gorl), "b": at_15m(ppo)}
    a, b = list(at["a"].values()), list(at["b"].values())
    if not a or not b:
        return "The hopper-stand runs have no evaluation at 15M env steps yet."
    (ma, sa), (mb, sb) = ((np.mean(v), np.std(v, ddof=1) if len(v) > 1 else 0.0) for v in (a, b))
    paired = sorted(at["a"].keys() & at["b"].keys())  # the same seed of both methods
    wins = sum(at["a"][seed] > at["b"][seed] for seed in paired)
    ahead = "ahead of" if ma > mb else "behind"
    difference = abs(round(ma) - round(mb))  # of the means as printed
    unfinished = (f" Preliminary: {len(a)} and {len(b)} of {SEEDS_PLANNED} seeds are finished."
                  if min(len(a), len(b)) < SEEDS_PLANNED else "")
    if min(len(a), len(b)) < 2:  # one seed has no spread: nothing to compare the difference with
        single = " and ".join(name for name, v in (("GoRL", a), ("Gaussian PPO", b)) if len(v) < 2)
        compared = f" ({single}: one seed, no spread over seeds to compare it with)"
    else:
        compared = (f", {'more' if difference > sa + sb else 'less'} than the spread over seeds (the sum of the two "
                    f"sds, {sa + sb:.0f})")
    return (f"On hopper-stand at 15M env steps (decoder data counted), GoRL (flow) scores {spread(a)} and "
            f"Gaussian PPO {spread(b)} (mean ± sd over n seeds): GoRL is {ahead} Gaussian PPO by "
            f"{difference}{compared}, and ahead in {wins} of {len(paired)} paired seeds." + unfinished)


def latent_std(method: str, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Env steps and the latent policy's mean std per PPO iteration (``train_log.csv``), if exported."""
    path = RESULTS / method / f"seed{seed}" / "train_log.csv"
    if not path.exists():
        return None
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return (np.array([float(r["frames_total"]) for r in rows]),
            np.array([float(r["latent_scale_mean"]) for r in rows]))


def stages(method: str) -> list[dict]:
    """Per finished run of ``method`` and GoRL stage: ``seed``, ``stage``, the ``first`` evaluation (the fresh encoder
    on the refit decoder), the previous stage's best (``previous``, None at stage 0), the stage's ``best``, the
    validation loss of the refit that made its decoder (``loss``: None at stage 0 or if not saved) and the latent
    std at the stage's end (``std``: None without a ``train_log.csv``)."""
    rows = []
    for seed, (columns, summary) in sorted(load(method).items()):
        refits = {r["stage"]: r for r in summary["refits"]}
        stds = latent_std(method, seed)
        previous = None
        for stage in sorted(set(columns["stage"].astype(int))):
            inside = columns["stage"] == stage
            returns, steps = columns["return_mean"][inside], columns["frames_total"][inside]
            refit = refits.get(stage - 1, {})
            std = None
            if stds is not None:
                in_stage = (stds[0] > steps[0]) & (stds[0] <= steps[-1])
                std = float(stds[1][in_stage][-1]) if in_stage.any() else None
            rows.append({"seed": seed, "stage": stage, "first": float(returns[0]), "previous": previous,
                         "best": float(returns.max()), "loss": refit.get("best_val_loss"), "std": std})
            previous = float(returns.max())
    return rows


def why(method: str = "gorl_flow") -> str:
    """Per seed and stage of the GoRL runs (:func:`stages`): the first evaluation and its drop from the previous
    stage's best, the best evaluation, the validation loss of the refit that made the stage's decoder, and the
    latent std at the stage's end."""
    lines = ["| seed | stage | first evaluation (drop from the previous stage's best) | best evaluation | "
             "refit validation loss of its decoder | latent std at the end |", "|---|---|---|---|---|---|"]
    for row in stages(method):
        first = f"{row['first']:.0f}" + ("" if row["previous"] is None else f" ({row['first'] - row['previous']:+.0f})")
        loss = "identity" if row["stage"] == 0 else ("n/a" if row["loss"] is None else f"{row['loss']:.3f}")
        std = "n/a" if row["std"] is None else f"{row['std']:.2f}"
        lines.append(f"| {row['seed']} | {row['stage']} | {first} | {row['best']:.0f} | {loss} | {std} |")
    return "\n".join(lines)


def decoder_table(path: pathlib.Path | None = None) -> str:
    """Per state of the decoder figure: the share of action components at the bound (``|tanh(a)|`` above the
    file's ``bound``) for the decoder on ``N(0, I)`` latents, GoRL's policy and the Gaussian policy
    (``decoder_actions.json``)."""
    path = path or DECODER_STATS
    if not path.exists():
        return "The decoder figure has not been made yet."
    stats = json.loads(path.read_text())
    lines = [f"Runs: GoRL `{stats['gorl_run']}` (its final decoder and encoder), Gaussian PPO `{stats['ppo_run']}`; "
             f"{stats['num_samples']} samples per state.", "",
             f"Share of action components at the bound (|a| > {stats['bound']:g} after tanh), all 4 dims:", "",
             "| state (step of one GoRL episode) | decoder, z ~ N(0, I) | GoRL policy | Gaussian PPO policy |",
             "|---|---|---|---|"]
    for i, step in enumerate(stats["state_steps"]):
        shares = [stats[key][i] for key in ("decoder_at_bound", "gorl_policy_at_bound", "gaussian_at_bound")]
        lines.append(f"| {step} | " + " | ".join(f"{share:.0%}" for share in shares) + " |")
    return "\n".join(lines)


def boundary_files() -> list[tuple[str, str, pathlib.Path]]:
    """``stage_boundaries/<method>_seed<k>.json`` as (method, seed, path), in the order of :data:`METHODS`."""
    files = [(*path.stem.rsplit("_seed", 1), path) for path in BOUNDARIES.glob("*.json")]
    return sorted(files, key=lambda f: (list(METHODS).index(f[0]), int(f[1])))


def copy_share(boundary: dict) -> float:
    """The share of the data policy's return (the stochastic best policy) that the refit's copy of it (the refit
    decoder on ``N(0, I)`` latents) keeps, on the same episodes."""
    return boundary["refit_prior"] / boundary["best_stochastic"]


def boundary_table() -> str:
    """Per GoRL stage end (``stage_boundaries/*.json``, :func:`hopper_decoder.stage_boundaries`): the stage's best
    evaluation, then on common episodes its best policy deterministic, stochastic and at latent std 1, the refit
    decoder at ``z = 0`` and on ``N(0, I)`` (and the share of the stochastic policy's return the latter keeps), and
    the fresh encoder through the refit decoder."""
    files = boundary_files()
    if not files:
        return "No run's stage boundaries have been scored yet."
    keys = ("best_deterministic", "best_stochastic", "best_unit_noise", "refit_prior_mean", "refit_prior")
    lines = ["| run | stage end | best evaluation in the stage | the best policy, again | "
             "its stochastic policy (the decoder data) | the best at latent std 1 | refit decoder at z = 0 | refit "
             "decoder on z ~ N(0, I) (its share of the decoder data's return) | fresh encoder on the refit decoder | "
             "latent std of the best | fresh encoder's mean abs latent | the decoder data's absolute pre-tanh "
             "actions: mean, 99th percentile |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    episodes, selections, reproduced = set(), set(), True
    for method, seed, path in files:
        for b in json.loads(path.read_text()):
            episodes.add(b["episodes"])
            selections.add(f"the best of its {b['stage_evals']} evaluations of {b['eval_episodes']} episodes")
            reproduced &= b["fresh_reproduced"]
            lines.append(f"| {METHODS[method]}, seed {seed} | {b['stage']} | {b['best_eval']:.0f} | "
                         + " | ".join(f"{b[key]:.0f}" for key in keys)
                         + f" ({copy_share(b):.2f}) | {b['fresh_encoder']:.0f} | {b['latent_std']:.2f} | "
                         f"{b['fresh_latent_mean_abs']:.3f} | "
                         + (f"{b['data_action_abs_mean']:.2f}, {b['data_action_abs_p99']:.2f} |"
                            if "data_action_abs_mean" in b else "n/a |"))
    note = (f"Column 3: {' or '.join(sorted(selections))}, as in the table above. Columns 4-9: mean return of the same {'/'.join(map(str, sorted(episodes)))} deterministic-start "
            "episodes (1000 steps, undiscounted). The last column: the actions of the stochastic policy on those "
            "episodes before the env's tanh (which is within 1% of its bound past 2.65), as collected; the refit is "
            f"fit to them as they are, or clamped to ±{REMEDY_CLIP:g} in the runs with refits on clamped actions. "
            "The fresh encoder is rebuilt from the run's seed; "
            + ("it gives each run's own first evaluation of the next stage exactly." if reproduced else
               "**it does not give every run's own first evaluation of the next stage: the rebuild is wrong.**"))
    return "\n".join(lines) + "\n\n" + note


#: a data policy below this return has not stood up: the share of it a copy keeps says nothing
STANDING = 100.0


def boundary_copies() -> str:
    """The refit's copy of the data policy at the scored stage ends (:func:`boundary_files`) where that policy
    stands (:data:`STANDING`): the remedy's against the runs refit on the actions as collected, as the mean share of
    the data policy's return kept, and the mean width of the decoder data at every scored stage end."""
    shares, widths, seeds = {True: [], False: []}, {True: [], False: []}, {}
    for method, seed, path in boundary_files():
        clamped = method == REMEDY_METHOD
        seeds.setdefault(method, []).append(seed)
        for b in json.loads(path.read_text()):
            if b["best_stochastic"] >= STANDING:
                shares[clamped].append(copy_share(b))
            widths[clamped].append(b.get("data_action_abs_mean", float("nan")))
    if not shares[True] or not shares[False]:
        return ""

    def runs(clamped: bool) -> str:
        return " and ".join(f"`{method}` seed{'s' if len(ks) > 1 else ''} {', '.join(ks)}"
                            for method, ks in seeds.items() if (method == REMEDY_METHOD) == clamped)

    return (f" At its scored stage ends ({runs(True)}; the boundary table) where the data policy stands (scores "
            f"{STANDING:.0f} or more), the refit's copy keeps {np.mean(shares[True]):.2f} of the data policy's return "
            f"on average (per stage end: {' / '.join(f'{x:.2f}' for x in shares[True])}) against "
            f"{np.mean(shares[False]):.2f} for the refits on the actions as collected ({runs(False)}), and its "
            f"decoder data stay narrower: mean absolute pre-tanh action {np.nanmean(widths[True]):.1f} against "
            f"{np.nanmean(widths[False]):.1f}.")


def refit_budget_table() -> str:
    """Per redone refit (``refit_budget/*.json``, ``benchmarks/hopper_refit.py``): the data policy's score, then per
    epoch budget and action targets (as collected, or clamped) the epochs run, the best epoch, the validation loss,
    the copy's scores and the refit's minutes."""
    files = sorted(REFIT_BUDGET.glob("*.json"))
    if not files:
        return "No refit has been redone yet."
    lines = ["| run, stage end | the data policy | epochs at most | pre-tanh action targets | epochs run (best) | "
             "validation loss | refit decoder on z ~ N(0, I) | refit decoder at z = 0 | refit minutes |",
             "|---|---|---|---|---|---|---|---|---|"]
    rows, episodes = set(), set()
    for path in files:
        result = json.loads(path.read_text())
        method, seed = result["run"].split("/")
        rows.add(result["rows"])
        episodes.add(result["episodes"])
        for b in result["budgets"]:
            targets = "as collected" if b.get("clip") is None else f"clamped to ±{b['clip']:g}"
            lines.append(f"| {METHODS[method]}, {seed.replace('seed', 'seed ')}, stage {result['stage']} | "
                         f"{result['data_policy']:.0f} | {b['max_epochs']} | {targets} | {b['epochs_run']} "
                         f"({b['best_epoch'] + 1}) | "
                         f"{b['best_val_loss']:.2f} | {b['prior']:.0f} | {b['prior_mean']:.0f} | {b['minutes']:.1f} |")
    note = (f"Each refit starts from a new decoder on the same {'/'.join(f'{r:,}' for r in sorted(rows))} rows of "
            "the data policy (collected again, other env seeds), with the run's other refit settings; returns: "
            f"mean of the same {'/'.join(map(str, sorted(episodes)))} episodes as the table above; minutes on 2 "
            "shared CPU cores (one thread).")
    return "\n".join(lines) + "\n\n" + note


def refit_cause() -> str:
    """Why the remedy clamps the refit's targets: what the same refit gave on the same rows with and without the
    clamp (``refit_budget/*.json``, entries with a ``clip``)."""
    cause = ("The refit is fit to the data policy's pre-tanh actions as collected, mostly far outside the action box "
             "(the boundary table's last column), and its copy of that policy is worst where they are widest.")
    for path in sorted(REFIT_BUDGET.glob("*.json")):
        result = json.loads(path.read_text())
        raw = {b["max_epochs"]: b for b in result["budgets"] if b.get("clip") is None}
        for clamped in (b for b in result["budgets"] if b.get("clip") == REMEDY_CLIP and b["max_epochs"] in raw):
            plain = raw[clamped["max_epochs"]]
            cause += (f" Redone on {result['run'].replace('/', ' ')}'s stage-{result['stage']} data with "
                      f"{clamped['max_epochs']} epochs, clamping them to ±{REMEDY_CLIP:g} takes the copy of the data "
                      f"policy ({result['data_policy']:.0f}) from {plain['prior']:.0f} to {clamped['prior']:.0f} and "
                      f"the decoder at z = 0 from {plain['prior_mean']:.0f} to {clamped['prior_mean']:.0f}.")
    return cause + (f" The remedy fits every refit to the actions clamped to ±{REMEDY_CLIP:g} "
                    f"(`refit.action_clip={REMEDY_CLIP:g}`), every other setting as the reference's.")


def remedy() -> str:
    """The remedy (:data:`REMEDY_METHOD`) against the reference schedule (``gorl_flow``) at 15M env steps, and
    whether it becomes the default: only if it wins on the mean and in at least 2 of 3 paired seeds."""
    cause = refit_cause()
    base, fix = load("gorl_flow"), load(REMEDY_METHOD)
    if not fix:
        return cause + " Its runs have not been made yet."
    at_base, at_fix = at_15m(base), at_15m(fix)
    paired = sorted(at_base.keys() & at_fix.keys())  # both means over the same seeds
    if not paired:
        return cause + " None of its runs has a finished reference run of the same seed yet."
    fixed, reference = [at_fix[seed] for seed in paired], [at_base[seed] for seed in paired]
    wins = sum(f > r for f, r in zip(fixed, reference))
    better = np.mean(fixed) > np.mean(reference)
    meets = better and wins >= 2 and len(paired) >= SEEDS_PLANNED
    outcome = ("it meets the rule to replace the reference schedule as the default (a mean above the reference's "
               "and at least 2 of 3 seeds won)" if meets else
               "the reference schedule stays the default (the rule: a mean above the reference's and at least 2 of "
               "3 seeds won" + ("" if len(paired) >= SEEDS_PLANNED else
                                 f"; {len(paired)} of {SEEDS_PLANNED} paired seeds are finished") + ")")
    return (cause + f" At 15M env steps the remedy scores {spread(fixed)} against {spread(reference)} over the same "
            f"seeds, ahead in {wins} of {len(paired)}: {outcome}." + boundary_copies() + stage_starts(paired)
            + "\n\n" + why(REMEDY_METHOD))


def stage_starts(seeds: list[int]) -> str:
    """What the remedy changed where it acts, over the given seeds: the mean first evaluation of stages
    1-3, its mean drop from the previous stage's best, the mean best evaluation of those stages and the refits'
    mean validation loss, remedy against reference (:func:`stages`)."""
    means = {}
    for method in ("gorl_flow", REMEDY_METHOD):
        rows = [r for r in stages(method) if r["seed"] in seeds and r["previous"] is not None]
        losses = [r["loss"] for r in rows if r["loss"] is not None]
        means[method] = (np.mean([r["first"] for r in rows]), np.mean([r["first"] - r["previous"] for r in rows]),
                         np.mean(losses) if losses else float("nan"), len(rows), np.mean([r["best"] for r in rows]))
    (first, drop, loss, n, best), (first_ref, drop_ref, loss_ref, _, best_ref) = (means[REMEDY_METHOD],
                                                                                means["gorl_flow"])
    return (f" Its {n} stage starts after a refit score {first:.0f} on average ({drop:+.0f} from the previous "
            f"stage's best) against the reference's {first_ref:.0f} ({drop_ref:+.0f}), the same stages' best "
            f"evaluations average {best:.0f} against {best_ref:.0f}, and its refits end at a "
            f"validation loss of {loss:.2f} on average against {loss_ref:.2f} (each on its own run's data, so a loss "
            "compares refits of the same run, not runs); per seed and stage:")


def blocks() -> dict[tuple[pathlib.Path, str], str]:
    """Every generated block this script owns, by (file, name)."""
    sentence = verdict()
    return {(RESULTS_MD, "hopper-15m-verdict"): sentence, (README, "hopper-15m-verdict"): sentence,
            (RESULTS_MD, "hopper-15m-table"): table(), (RESULTS_MD, "hopper-15m-why"): why(),
            (RESULTS_MD, "hopper-15m-decoder"): decoder_table(), (RESULTS_MD, "hopper-15m-remedy"): remedy(),
            (RESULTS_MD, "hopper-15m-boundaries"): boundary_table(),
            (RESULTS_MD, "hopper-15m-refit-budget"): refit_budget_table()}


def plot(path: pathlib.Path = FIGURE) -> None:
    """Return against env steps (mean and seeds, the paper's 15M points marked) and against training wall-clock."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (steps_ax, clock_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for method, label in METHODS.items():
        runs = load(method)
        if not runs:
            continue
        color = COLORS[method]
        for columns, _ in runs.values():
            steps_ax.plot(columns["frames_total"] / 1e6, columns["return_mean"], color=color, lw=0.7, alpha=0.4)
            clock_ax.plot(columns["wall_time_train_s"] / 3600, columns["return_mean"], color=color, lw=0.9, alpha=0.7)
        length = min(len(c["frames_total"]) for c, _ in runs.values())
        mean = np.mean([c["return_mean"][:length] for c, _ in runs.values()], axis=0)
        x = next(iter(runs.values()))[0]["frames_total"][:length] / 1e6
        steps_ax.plot(x, mean, color=color, lw=2, label=f"{label} (n={len(runs)})")
        if method in PAPER_15M:
            steps_ax.plot([15], [PAPER_15M[method]], marker="*", ms=12, color=color, mec="black", ls="none")
    steps_ax.plot([], [], marker="*", ms=10, color="white", mec="black", ls="none", label="paper at 15M")
    steps_ax.set_xlabel("env steps, millions (encoder PPO + decoder data)")
    clock_ax.set_xlabel("training wall-clock, hours (2 CPU cores, evaluations excluded)")
    for ax in (steps_ax, clock_ax):
        ax.set_ylabel("eval return (deterministic, 1000 steps)")
        ax.grid(alpha=0.3)
    steps_ax.legend(fontsize=8)
    steps_ax.set_title("hopper-stand: mean (thick) and seeds (thin)")
    clock_ax.set_title("hopper-stand: seeds against wall-clock")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report() -> None:
    for (path, name), body in blocks().items():
        if write_block(path, name, body):
            print(f"updated {path.relative_to(ROOT)}: {name}")
    plot()
    print(f"wrote {FIGURE.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("report", help="the figure and the generated blocks from results/hopper_15m")
    decoder = sub.add_parser("decoder", help="decoded actions against the Gaussian policy's, from final checkpoints")
    decoder.add_argument("gorl_run")
    decoder.add_argument("ppo_run")
    boundaries = sub.add_parser("boundaries", help="what each decoder refit hands the next stage, scored in returns")
    boundaries.add_argument("run", help="a GoRL run directory (its eval.csv; named <method>/seed<k>)")
    boundaries.add_argument("checkpoints", help="every checkpoint the run wrote (it keeps only its last)")
    args = parser.parse_args()
    if args.command == "report":
        report()
    elif args.command == "boundaries":
        from hopper_decoder import stage_boundaries  # needs the run's checkpoints (not committed)

        run = pathlib.Path(args.run).resolve()
        BOUNDARIES.mkdir(exist_ok=True)
        path = BOUNDARIES / f"{run.parent.name}_{run.name}.json"
        path.write_text(json.dumps(stage_boundaries(run, pathlib.Path(args.checkpoints)), indent=1) + "\n")
        print(f"wrote {path.relative_to(ROOT)}; now run: python benchmarks/hopper_15m.py report")
    else:
        from hopper_decoder import plot_decoder  # needs the runs' checkpoints (outputs/, not committed)

        stats = plot_decoder(pathlib.Path(args.gorl_run), pathlib.Path(args.ppo_run), DECODER_FIGURE)
        DECODER_STATS.write_text(json.dumps(stats, indent=1) + "\n")
        print(f"wrote {DECODER_STATS.relative_to(ROOT)}; now run: python benchmarks/hopper_15m.py report")


if __name__ == "__main__":
    main()
