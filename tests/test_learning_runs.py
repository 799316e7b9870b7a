"""benchmarks/learning_runs.py: the grid skips saved runs and resumes interrupted ones."""
import importlib.util
import os
import pathlib

import pytest

from torchrl_gorl.training import save_checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[1]
GRID_OVERRIDES = ["schedule.stage_frames=[928000,928000,464000,464000]", "ppo.num_threads=1"]


@pytest.fixture(scope="module")
def runs():
    spec = importlib.util.spec_from_file_location("learning_runs", ROOT / "benchmarks" / "learning_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _grid_point(runs, tmp_path, overrides=GRID_OVERRIDES):
    cmd = runs.command_of("hopper-stand", "gorl_flow", 2, "cpu", overrides)
    run_dir, target = tmp_path / "outputs", tmp_path / "results"
    (run_dir / "checkpoints").mkdir(parents=True)
    target.mkdir()
    return cmd, run_dir, target


def test_fresh_when_nothing_is_there(runs, tmp_path):
    cmd, run_dir, target = _grid_point(runs, tmp_path)
    assert runs.plan(cmd, run_dir, target) == ("fresh", [])
    assert runs.CHECKPOINT_EVERY in cmd  # grid runs checkpoint inside stages, unless told otherwise
    assert runs.CHECKPOINT_EVERY not in runs.command_of("hopper-stand", "fpo", 1, "cpu", ["checkpoint.interval_frames=0"])


def test_saved_results_of_the_same_command_are_skipped(runs, tmp_path):
    cmd, run_dir, target = _grid_point(runs, tmp_path)
    (target / "command.txt").write_text(runs.recorded(cmd) + "\n")
    assert runs.plan(cmd, run_dir, target) == ("skip", [])
    assert runs.plan(cmd, run_dir, target, rerun=True) == ("fresh", [])
    # checkpoint options do not change results: commands that differ only there are the same run
    (target / "command.txt").write_text(runs.recorded(cmd).replace(runs.CHECKPOINT_EVERY, "") + "\n")
    assert runs.plan(cmd, run_dir, target) == ("skip", [])
    # another budget is another run
    other = runs.command_of("hopper-stand", "gorl_flow", 2, "cpu", ["ppo.num_threads=1"])
    assert runs.plan(other, run_dir, target) == ("fresh", [])


def test_interrupted_run_resumes_from_its_checkpoint(runs, tmp_path):
    cmd, run_dir, target = _grid_point(runs, tmp_path)
    checkpoint = save_checkpoint({"progress": {"iteration": 1}}, run_dir / "checkpoints", step=8000)
    assert runs.plan(cmd, run_dir, target) == ("resume", [f"checkpoint.resume={checkpoint.parent}"])
    # a summary written after the last checkpoint means the run finished: start afresh instead
    summary = run_dir / "summary.json"
    summary.write_text("{}")
    os.utime(checkpoint, (1, 1))
    assert runs.plan(cmd, run_dir, target)[0] == "fresh"
    # an older summary (from an earlier finished run) and a newer checkpoint: interrupted rerun
    os.utime(summary, (1, 1))
    os.utime(checkpoint, None)
    assert runs.plan(cmd, run_dir, target)[0] == "resume"
    assert runs.plan(cmd, run_dir, target, rerun=True)[0] == "fresh"


def test_documented_grid_command_skips_the_committed_runs(runs):
    """results.md's grid command, re-run, must not redo what results/learning already holds."""
    saved = sorted(runs.RESULTS.glob("cheetah-run/gorl_flow/seed1/command.txt"))
    assert saved, "the cheetah-run GoRL (flow) run is committed"
    cmd = runs.command_of("cheetah-run", "gorl_flow", 1, "cpu", GRID_OVERRIDES)
    target = saved[0].parent
    assert runs.plan(cmd, runs.run_dir_of("cheetah-run", "gorl_flow", 1), target) == ("skip", [])


def test_status_counts_the_resumed_log(runs, tmp_path):
    """A resumed run writes a second log directory whose name may sort first; its larger count is the progress."""
    assert runs.env_steps_reached(tmp_path) == 0.0
    first, resumed = ["224000,224000.0"], ["224000,224000.0", "1464000,1464000.0"]
    for name, rows in (("run_5914_resumed", resumed), ("run_88c7_first", first)):
        frames = tmp_path / "logs" / name / "scalars" / "frames"
        frames.mkdir(parents=True)
        (frames / "total.csv").write_text("\n".join(rows) + "\n")
    assert runs.env_steps_reached(tmp_path) == 1464000.0


def test_table_spread_is_the_sample_std_over_seeds(runs):
    """results.md documents mean ± sample std (ddof 1); NaN (a run that did not reach the column) is left out."""
    assert runs.fmt([496.0, 588.0]) == "542 ± 65 (n=2)"
    assert runs.fmt([496.0, float("nan")]) == "496 (n=1)"
    assert runs.fmt([]) == "n/a"


def test_fresh_run_drops_old_logs_and_resume_keeps_them(runs, tmp_path):
    frames = tmp_path / "run" / "logs" / "old" / "scalars" / "frames"
    frames.mkdir(parents=True)
    (frames / "total.csv").write_text("3024000,3024000.0\n")
    runs.prepare(tmp_path / "run", "resume")
    assert runs.env_steps_reached(tmp_path / "run") == 3024000.0
    runs.prepare(tmp_path / "run", "fresh")
    assert runs.env_steps_reached(tmp_path / "run") == 0.0


def test_train_log_merges_a_resumed_runs_logs(runs, tmp_path):
    """Both log segments of a resumed run, by step; the step logged twice keeps the resumed run's value.

    The segments are ordered by their first step: here the resumed one sorts first by name and the first one
    has the newer file time (as after a copy), and neither may decide the order.
    """
    for name, lines in (("b_first", ["100,0.5", "200,0.6"]), ("a_resumed", ["200,0.7", "300,0.8"])):
        train = tmp_path / "logs" / name / "scalars" / "train"
        train.mkdir(parents=True)
        (train / "cfm_loss.csv").write_text("\n".join(lines) + "\n")
    os.utime(tmp_path / "logs" / "a_resumed", (1, 1))
    assert runs.train_log(tmp_path, ["cfm_loss"]) == [[100.0, 0.5], [200.0, 0.7], [300.0, 0.8]]
    rows = runs.train_log(tmp_path, ["cfm_loss", "kl_approx"])
    assert rows[0][1] == 0.5 and all(r[2] != r[2] for r in rows)  # a scalar never logged is NaN


def test_table_columns_follow_the_grid_not_a_shorter_ablation(runs):
    """A shorter ablation run does not pull the columns down; its cells past its end read n/a, never a carried value."""
    def run(end):
        return (runs.np.array([0.0, end / 2, end]), runs.np.array([0.0, 100.0, 200.0]), {"frames_total": end})

    methods = {"gorl_flow": {"1": run(3.0e6), "2": run(3.2e6)}, "gorl_flow_weighted": {"1": run(2.6e6)}}
    assert runs.column_budget(methods) == 3.0e6
    assert runs.column_budget({"gorl_flow_weighted": {"1": run(2.6e6)}}) == 2.6e6
    marks = [0.75e6, 1.5e6, 3.0e6]
    assert runs.columns(methods["gorl_flow_weighted"], marks) == ["0 (n=1)", "100 (n=1)", "n/a"]
    assert runs.columns(methods["gorl_flow"], marks) == ["0 ± 0 (n=2)", "50 ± 71 (n=2)", "150 ± 71 (n=2)"]
    assert runs.np.isnan(runs.curve_at(*run(2.6e6)[:2], 2.7e6))  # the plots use the same cut-off


def test_stages_command_backs_the_stage_numbers_in_results_md(runs):
    """results.md quotes finger-spin GoRL's stage bests per seed; `stages` reads them off the committed eval.csv."""
    text = " ".join((ROOT / "docs" / "results.md").read_text().split())
    assert "learning_runs.py stages" in text
    assert "seed1 stage 1: first 168 @ 1.01M, best 683 @ 1.93M, last 674 @ 1.94M" in runs.stage_evals(
        "finger-spin", "gorl_flow")
    for method, label in (("gorl_flow", "flow"), ("gorl_diffusion", "diffusion")):
        seeds = runs.stage_points("finger-spin", method)
        assert len(seeds) >= 2 and all(sorted(stages) == [0, 1, 2, 3] for stages in seeds.values())
        bests = [" / ".join(f"{max(r for _, r in stages[k]):.0f}" for k in (1, 2, 3)) for stages in seeds.values()]
        quoted = ", ".join(bests[:-1]) + " and " + bests[-1]
        assert f"{quoted} ({label}" in text, quoted


def test_commands_back_the_hopper_stand_seed2_numbers_in_results_md(runs):
    """hopper-stand seed 2's GoRL stage bests and episode maxima in results.md are what `stages`/`windows` print."""
    text = " ".join((ROOT / "docs" / "results.md").read_text().split())
    bests = {}
    for method in ("gorl_flow", "gorl_diffusion"):
        stages = runs.stage_points("hopper-stand", method)["seed2"]
        bests[method] = " / ".join(f"{max(r for _, r in stages[k]):.0f}" for k in (1, 2, 3))
        assert f"{max(r for _, r in stages[0]):.0f}" == "13"
    assert f"{bests['gorl_flow']} (flow) and {bests['gorl_diffusion']} (diffusion)" in text
    flow = runs.windows("hopper-stand", "gorl_flow", 2, "return_max", [1.0])
    diffusion = runs.windows("hopper-stand", "gorl_diffusion", 2, "return_max", [1.0])
    assert flow[0].endswith("max 41") and diffusion[0].endswith("max 41") and "at most 41 before" in text
    assert flow[1].endswith("max 849") and diffusion[1].endswith("max 426")
    assert "up to 849 (flow) and 426 (diffusion) after 1.0M" in text
    ppo = runs.stage_points("hopper-stand", "ppo_gaussian")["seed2"][0]
    best_step, best = max(ppo, key=lambda point: point[1])
    assert f"best evaluation {best:.0f} at {best_step:.2f}M, last {ppo[-1][1]:.0f}" in text
    before, after = (v.max() for *_, v in episode_max_windows(runs, "ppo_gaussian", 2))
    assert f"single episodes at most {before:.0f} before 1.0M and {after:.0f} after" in text
    summary = runs.load_runs()["hopper-stand"]["ppo_gaussian"]["seed2"][2]
    assert f"fresh final evaluation {summary['final_return']:.0f} ± {summary['final_return_std']:.0f}" in text


def test_windows_command_backs_fpo_seed3_collapse_numbers(runs):
    """The seed-3 FPO diagnostics in results.md are what `windows` prints from the committed train_log.csv."""
    text = " ".join((ROOT / "docs" / "results.md").read_text().split())
    cfm = runs.windows("finger-spin", "fpo", 3, "cfm_loss", [2.0, 2.4], [1.5, 10])
    assert cfm[0].endswith("max 0.733") and "at most 0.73 before 2.0M" in text
    assert cfm[-2] == "cfm_loss first above 1.5: 1.64 @ 2.14M" and "1.6 at 2.14M" in text
    assert cfm[-1] == "cfm_loss first above 10: 10.6 @ 2.27M" and "11 at 2.27M" in text
    clip = runs.windows("finger-spin", "fpo", 3, "clip_fraction", [2.0, 2.4])
    kl = runs.windows("finger-spin", "fpo", 3, "kl_approx", [2.0, 2.4])
    assert "median 0.0555" in clip[0] and "median 0.893" in clip[-1] and "median 0.00123" in kl[0] and "median 1.4" in kl[-1]
    assert "clip fraction 0.06 before 2.0M and 0.89 after 2.4M, KL 0.001 and 1.4;" in text
    with pytest.raises(ValueError, match="no column 'nope'"):
        runs.windows("finger-spin", "fpo", 3, "nope", [])


def _fresh(summary: dict) -> str:
    """A run's fresh final evaluation as results.md quotes it."""
    return f"{summary['final_return']:.0f} ± {summary['final_return_std']:.0f}"


def _three_seed(runs, seeds: dict) -> str:
    """The table's "final" cell of a three-seed row, without its "(n=3)" (a row of another size does not match)."""
    return runs.fmt([s["final_return"] for *_, s in seeds.values()]).removesuffix(" (n=3)")


def _minutes(summary: dict) -> int:
    return round(summary["wall_time_s"] / 60)


def episode_max_windows(runs, method: str, seed: int) -> list:
    """hopper-stand's best single evaluation episodes before and after 1.0M env steps, as `windows ... --edges 1.0`."""
    return runs.window_values(*runs.run_column("hopper-stand", method, seed, "return_max"), [1.0])


def test_commands_back_the_hopper_stand_seed3_numbers_in_results_md(runs):
    """hopper-stand seed 3's quoted bests, episode maxima and fresh finals, and the three-seed finals, match the runs."""
    text = " ".join((ROOT / "docs" / "results.md").read_text().split())
    methods = ("gorl_flow", "gorl_diffusion", "ppo_gaussian")
    saved = runs.load_runs()["hopper-stand"]
    bests = [max(r for points in runs.stage_points("hopper-stand", m)["seed3"].values() for _, r in points)
             for m in methods]
    maxima = [episode_max_windows(runs, m, 3)[1][2].max() for m in methods]
    finals = [_fresh(saved[m]["seed3"][2]) for m in methods]
    assert "best evaluations " + " / ".join(f"{b:.0f}" for b in bests) in text
    assert "single episodes at most " + " / ".join(f"{v:.0f}" for v in maxima) + " after 1.0M" in text
    assert (f"Fresh final evaluations {finals[0]} (GoRL flow), {finals[1]} (GoRL diffusion), {finals[2]} (Gaussian PPO)"
            in text)
    # the three-seed means quoted in the narrative are the table's "final" cells
    three_seed = [_three_seed(runs, saved[m]) for m in methods]
    assert f"table: {three_seed[0]} and {three_seed[1]} vs {three_seed[2]} on fresh episodes" in text


def test_collapse_step_is_where_returns_stay_below_a_tenth_of_the_best(runs):
    """The FPO collapse column: from the first point after the best that stays low; never for a run that never learned."""
    np = runs.np
    steps = np.arange(8) * 1e5
    assert runs.collapse_step(steps, np.array([0, 300, 800, 500, 70, 90, 3, 1.0])) == 6e5  # 90 >= 80: not yet
    assert runs.collapse_step(steps, np.array([0, 300, 800, 500, 70, 60, 3, 1.0])) == 4e5
    assert np.isnan(runs.collapse_step(steps, np.array([0, 300, 800, 500, 400, 450, 380, 420.0])))
    assert np.isnan(runs.collapse_step(steps, np.array([0, 30, 80, 0, 0, 0, 0, 0.0])))  # best under 100
    assert np.isnan(runs.collapse_step(steps, np.array([0, 300, 500, 600, 700, 750, 760, 800.0])))  # best is last
    with pytest.raises(ValueError, match="fraction must be in \\(0, 1\\), got 1.5"):
        runs.collapse_step(steps, np.zeros(8), fraction=1.5)


def test_fpo_collapse_table_matches_the_finger_spin_narrative(runs):
    """results.md's generated FPO collapse rows agree with the committed runs and the narrative's quoted steps."""
    text = (ROOT / "docs" / "results.md").read_text()
    rows = runs.collapse_rows(runs.load_runs())
    assert rows and all(row in text for row in rows)
    finger = [row for row in rows if row.startswith("| finger-spin |")]
    assert finger == ["| finger-spin | 1 | 811 @ 2.06M | 2.38M (then at most 57) | 2.29M |",
                      "| finger-spin | 2 | 808 @ 1.74M | 2.06M (then at most 40) | 1.90M |",
                      "| finger-spin | 3 | 884 @ 2.06M | 2.38M (then at most 55) | 2.27M |"]
    assert all("| no |" in row or "n/a (best under 100)" in row for row in rows if not row.startswith("| finger-spin"))
    steps = [runs.collapse_step(x, y) / 1e6 for x, y, _ in runs.load_runs()["finger-spin"]["fpo"].values()]
    assert f"all three seeds (from {min(steps):.2f}-{max(steps):.2f}M env steps), not on cheetah-run" in " ".join(text.split())
    # the narrative's lead of the CFM blow-up over the collapse, from the same two quantities
    saved = runs.load_runs()["finger-spin"]["fpo"]
    leads = []
    for seed, (x, y, _) in saved.items():
        steps, cfm = runs.saved_cfm_loss("finger-spin", "fpo", seed)
        leads.append(runs.collapse_step(x, y) / 1e6 - steps[runs.first_above(cfm, runs.CFM_BLOW_UP)])
    assert (f"the CFM loss passes 10 between {min(leads):.2f}M and {max(leads):.2f}M env steps before"
            in " ".join(text.split()))


def test_commands_back_the_three_seed_fpo_and_dppo_numbers_in_results_md(runs):
    """cheetah-run and hopper-stand FPO and finger-spin and hopper-stand DPPO (seeds 1-3) quotes are what the runs hold."""
    text = " ".join((ROOT / "docs" / "results.md").read_text().split())
    saved = runs.load_runs()
    np = runs.np

    def best(task, method, seed):
        return max(r for points in runs.stage_points(task, method)[f"seed{seed}"].values() for _, r in points)

    cheetah = saved["cheetah-run"]["fpo"]
    finals = " / ".join(f"{cheetah[f'seed{k}'][2]['final_return']:.0f}" for k in (1, 2, 3))
    mean = _three_seed(runs, cheetah)
    assert f"FPO {finals} ({mean})" in text
    assert "FPO " + " / ".join(f"{best('cheetah-run', 'fpo', k):.0f}" for k in (1, 2, 3)) + "." in text
    cfm = runs.run_column("cheetah-run", "fpo", 3, "cfm_loss")[1]
    clip = runs.run_column("cheetah-run", "fpo", 3, "clip_fraction")[1]
    kl = runs.run_column("cheetah-run", "fpo", 3, "kl_approx")[1]
    assert (f"stays at {cfm.min():.2f}-{cfm.max():.2f} over the whole run, clip fraction at most {clip.max():.2f}, "
            f"approximate KL at most {kl.max():.2f}") in text

    hopper = saved["hopper-stand"]["fpo"]
    assert "Best evaluations " + " / ".join(f"{best('hopper-stand', 'fpo', k):.0f}" for k in (1, 2, 3)) in text
    fresh = " / ".join(_fresh(hopper[f"seed{k}"][2]) for k in (1, 2, 3))
    table = _three_seed(runs, hopper)
    assert f"fresh final evaluations {fresh} (table: {table})" in text
    maxima = [episode_max_windows(runs, "fpo", k)[1][2].max() for k in (2, 3)]
    assert f"at most {maxima[0]:.0f} (seed 2) and {maxima[1]:.0f} (seed 3) after 1.0M" in text
    ranges = [runs.run_column("hopper-stand", "fpo", k, "cfm_loss")[1] for k in (2, 3)]
    assert "stay at {:.2f}-{:.2f} and {:.2f}-{:.2f}".format(*(f(r) for r in ranges for f in (np.min, np.max))) in text

    dppo = saved["finger-spin"]["dppo"]
    early = [runs.window_values(*runs.run_column("finger-spin", "dppo", k, "return_mean"), [2.23])[0][2].max()
             for k in (1, 2, 3)]
    assert f"at most {early[0]:.0f} (seed 1), {early[1]:.0f} (seed 2) and {early[2]:.0f} (seed 3) up to 2.22M" in text
    points = runs.stage_points("finger-spin", "dppo")
    peaks = [max(points[f"seed{k}"][0], key=lambda p: p[1]) for k in (1, 2, 3)]
    assert round(peaks[0][1]) == round(peaks[1][1])  # the text quotes one best for seeds 1 and 2
    assert (f"a best of {peaks[0][1]:.0f} (seed 1 at {peaks[0][0]:.2f}M, seed 2 at {peaks[1][0]:.2f}M) and "
            f"{peaks[2][1]:.0f} (seed 3 at {peaks[2][0]:.2f}M)") in text
    three_seed = _three_seed(runs, dppo)
    fresh = ", ".join(_fresh(dppo[f"seed{k}"][2]) for k in (1, 2)) + f" and {_fresh(dppo['seed3'][2])}"
    assert f"fresh final evaluations {fresh} ({three_seed} over the three seeds)" in text
    for seed, start, end in ((2, 2.5, "2.54M"), (3, 2.3, "2.38M")):
        late = [r for step, r in points[f"seed{seed}"][0] if start < step < 3.02]
        assert all(b > a for a, b in zip(late, late[1:]))  # "still rising at the end"
        assert f"seed {seed}: " + " / ".join(f"{r:.0f}" for r in late) + f" from {end} to 3.02M" in text
    seed1 = [r for step, r in points["seed1"][0] if peaks[0][0] <= step < 3.02]
    assert seed1[-1] < seed1[0]  # "seed 1 is not"
    assert "seed 1 is not (" + " / ".join(f"{r:.0f}" for r in seed1) + f" from {peaks[0][0]:.2f}M)" in text
    # "All three end far below GoRL and Gaussian PPO; at 3.02M only the collapsed FPO evaluates lower."
    finger = saved["finger-spin"]
    last = {m: max(y[-1] for _, y, _ in finger[m].values()) for m in ("dppo", "fpo")}
    lowest_other = min(y[-1] for m in ("gorl_flow", "gorl_diffusion", "ppo_gaussian") for _, y, _ in finger[m].values())
    assert 2 * last["dppo"] < lowest_other and last["fpo"] < min(y[-1] for _, y, _ in dppo.values())
    assert "All three end far below GoRL and Gaussian PPO; at 3.02M only the collapsed FPO evaluates lower." in text

    hopper = saved["hopper-stand"]["dppo"]
    assert "Best evaluations " + " / ".join(f"{best('hopper-stand', 'dppo', k):.0f}" for k in (1, 2, 3)) + " (seeds" in text
    fresh = " / ".join(_fresh(hopper[f"seed{k}"][2]) for k in (1, 2, 3))
    table = _three_seed(runs, hopper)
    maxima = " / ".join(f"{episode_max_windows(runs, 'dppo', k)[1][2].max():.0f}" for k in (1, 2, 3))
    assert f"fresh final evaluations {fresh} (table: {table}), single episodes at most {maxima} after 1.0M" in text
    means = {m: np.mean([s["final_return"] for *_, s in seeds.values()]) for m, seeds in saved["hopper-stand"].items()}
    assert min(means, key=means.get) == "dppo"  # "the lowest fresh mean of the five methods"
    assert set(runs.PAPER["hopper-stand"]["dppo"]) == {0}
    assert "the paper's DPPO stays at 0 on this task up to 180M" in text
    assert f"slow start on this task ({runs.PAPER['finger-spin']['dppo'][0]} at 15M)" in text


def test_commands_back_the_cheetah_run_dppo_numbers_in_results_md(runs):
    """cheetah-run DPPO (seeds 1-3): fresh finals, bests, swings and late trends are what the saved runs hold."""
    text = " ".join((ROOT / "docs" / "results.md").read_text().split())
    cheetah = runs.load_runs()["cheetah-run"]
    dppo = cheetah["dppo"]
    fresh = " / ".join(_fresh(dppo[f"seed{k}"][2]) for k in (1, 2, 3))
    table = _three_seed(runs, dppo)
    assert f"Fresh final evaluations {fresh} (seeds 1 / 2 / 3; table: {table})" in text
    means = {m: runs.np.mean([s["final_return"] for *_, s in seeds.values()]) for m, seeds in cheetah.items()}
    others = [v for m, v in means.items() if m != "dppo"]
    share = sorted(round(100 * means["dppo"] / v) for v in others)
    assert f"{share[0]}-{share[-1]}% of the other rows' means ({min(others):.0f}-{max(others):.0f})" in text
    assert all(max(s["final_return"] for *_, s in dppo.values()) < min(s["final_return"] for *_, s in seeds.values())
               for m, seeds in cheetah.items() if m != "dppo")  # "ends lowest in every seed"
    points = {k: runs.stage_points("cheetah-run", "dppo")[f"seed{k}"][0] for k in (1, 2, 3)}
    peaks = {k: max(points[k], key=lambda p: p[1]) for k in (1, 2, 3)}
    assert ("best evaluations {:.0f} (seed 1 at {:.2f}M), {:.0f} (seed 2 at {:.2f}M) and {:.0f} (seed 3 at {:.2f}M)"
            .format(*(v for k in (1, 2, 3) for v in peaks[k][::-1]))) in text
    (s0, r0), (s1, r1) = [p for p in points[1] if 1.0 < p[0] < 1.3]
    assert r0 > 4 * r1  # "swing widely between neighbouring points"
    assert f"(seed 1: {r0:.0f} at {s0:.2f}M, {r1:.0f} at {s1:.2f}M)" in text
    tails = {k: [r for step, r in points[k] if 2.6 < step < 3.02] for k in (1, 2, 3)}
    assert all(b > a for a, b in zip(tails[1], tails[1][1:])) and tails[2][-1] < tails[2][-2]
    assert tails[3][-1] < tails[3][-2]  # "only seed 1 is rising at the end"
    assert "(" + " / ".join(f"{r:.0f}" for r in tails[1]) + " from 2.70M to 3.02M;" in text
    assert (f"seed 2 ends at {tails[2][-1]:.0f} after {tails[2][-2]:.0f}, seed 3 at {tails[3][-1]:.0f} after "
            f"{tails[3][-2]:.0f})") in text
    assert f"({runs.PAPER['cheetah-run']['dppo'][0]} at 15M on this task;" in text
    minutes = " / ".join(str(_minutes(dppo[f"seed{k}"][2])) for k in (1, 2, 3))
    assert f"DPPO seeds 1-3, three at a time ({minutes} minutes)" in text


def test_results_md_quotes_of_the_fpo_batch_have_their_data_behind_them(runs):
    """Wall-clock minutes, cheetah-run FPO's in-training numbers, the cross-method order and the runs left."""
    text = " ".join((ROOT / "docs" / "results.md").read_text().split())
    saved = runs.load_runs()
    minutes = {key: _minutes(saved[task][method][seed][2]) for key, (task, method, seed) in {
        "cheetah": ("cheetah-run", "fpo", "seed3"), "hopper2": ("hopper-stand", "fpo", "seed2"),
        "hopper3": ("hopper-stand", "fpo", "seed3"), "dppo": ("finger-spin", "dppo", "seed2"),
        "dppo_finger3": ("finger-spin", "dppo", "seed3"), "dppo_hopper2": ("hopper-stand", "dppo", "seed2"),
        "dppo_hopper3": ("hopper-stand", "dppo", "seed3")}.items()}
    assert f"four at a time ({minutes['cheetah']} minutes)" in text
    assert f"cheetah-run FPO seed 3 ({minutes['hopper2']} / {minutes['hopper3']} minutes)" in text
    assert f"this batch ({minutes['dppo']} minutes)" in text
    assert f"DPPO seed 3 with hopper-stand DPPO seeds 2-3, three at a time ({minutes['dppo_finger3']} minutes)" in text
    assert (f"DPPO seeds 2-3 with finger-spin DPPO seed 3 ({minutes['dppo_hopper2']} / {minutes['dppo_hopper3']} "
            "minutes)") in text
    cheetah = saved["cheetah-run"]
    fpo = cheetah["fpo"]
    assert f"({runs.columns(fpo, [runs.column_budget(cheetah) / 4])[0].removesuffix(' (n=3)')} at 0.76M" in text
    last = " / ".join(f"{fpo[f'seed{k}'][1][-1]:.0f}" for k in (1, 2, 3))
    finals = " / ".join(f"{fpo[f'seed{k}'][2]['final_return']:.0f}" for k in (1, 2, 3))
    assert f"ends at {last} in training" in text and f"{finals} on fresh episodes" in text
    x3, y3, _ = fpo["seed3"]
    with open(runs.RESULTS / "cheetah-run" / "fpo" / "seed3" / "eval.csv") as f:
        worst = float(list(runs.csv.DictReader(f))[-1]["return_min"])
    assert f"seed 3: {y3[-2]:.0f} at {x3[-2] / 1e6:.3f}M, {y3[-1]:.0f} after the last update" in text
    assert f"one of its 8 episodes at {worst:.0f}" in text
    # "Every FPO seed is above every GoRL (flow) seed, but not above the best GoRL (diffusion) and Gaussian PPO seeds."
    fresh = {m: [s["final_return"] for *_, s in cheetah[m].values()] for m in ("fpo", "gorl_flow", "gorl_diffusion",
                                                                                   "ppo_gaussian")}
    assert min(fresh["fpo"]) > max(fresh["gorl_flow"])
    assert max(fresh["fpo"]) < max(fresh["gorl_diffusion"]) and max(fresh["fpo"]) < max(fresh["ppo_gaussian"])
    assert "Every FPO seed is above every GoRL (flow) seed, but not above the best" in text
    grid = [m for m in runs.METHODS if m not in runs.ABLATIONS]
    left = sum(max(0, 3 - len(saved[task].get(m, {}))) for task in ("cheetah-run", "finger-spin", "hopper-stand")
               for m in grid)
    words = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert f"({words[left] if left < len(words) else left} runs left)" in text


def test_summaries_command_backs_the_default_command_numbers(runs, monkeypatch):
    """README and docs/performance.md quote the default command's whole runs; `summaries` reads them off the committed
    summary.json and eval.csv files (final on fresh episodes, best, last, training minutes, sample std over seeds)."""
    monkeypatch.setattr(runs, "RESULTS", ROOT / "results" / "default_preset")
    lines = runs.summaries()
    assert lines[0] == ("cheetah-run/gorl_flow/seed1: final 539, best 549, last 501 at 3.02M env steps, "
                        "9.6 min of training")
    assert lines[-1] == ("cheetah-run/gorl_flow (3 seeds): final 564 +- 50 (531-622), best 606 +- 70 (549-684), "
                         "last 520 +- 37 (496-563), minutes 11.5 (9.6-12.8)")
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "9.6-12.8 minutes of training" in readme and "539 / 622 / 531 on fresh episodes" in readme
    performance = (ROOT / "docs" / "performance.md").read_text()
    assert "| mean +- std | 564 +- 50 | 606 +- 70 | 520 +- 37 | 573 +- 59 | 11.5 |" in performance
    # the preset's runs before its one-graph step, the row beside them
    monkeypatch.setattr(runs, "RESULTS", ROOT / "results" / "default_preset_compiled_losses")
    assert runs.summaries()[-1] == ("cheetah-run/gorl_flow (3 seeds): final 446 +- 132 (294-525), best 631 +- 22 "
                                    "(613-655), last 483 +- 66 (407-528), minutes 11.6 (10.3-13.1)")
    assert "| compiled losses (`results/default_preset_compiled_losses`) | 521 / 525 / 294 (446 +- 132) |" in performance


def test_time_to_score_table_in_performance_md_is_what_the_saved_runs_give(runs):
    """docs/performance.md's time-to-score block is the generator's output from the committed runs, and its cells
    are read off them (cheetah-run GoRL seed 3 reaches 400 at its third evaluation, with the one-graph step and with
    compiled losses)."""
    lines = runs.time_to_score_lines()
    text = (ROOT / "docs" / "performance.md").read_text()
    block = text[text.index(runs.TTS_START) + len(runs.TTS_START):text.index(runs.TTS_END)]
    assert block.strip().splitlines() == "\n".join(lines).strip().splitlines()
    cheetah_gorl = next(line for line in lines if line.startswith("| cheetah-run | 400 | GoRL"))
    assert cheetah_gorl.split(" | ")[3].endswith("/ 2.2 (0.69M)")
    assert cheetah_gorl.split(" | ")[4].endswith("/ 2.7 (0.69M)")
    assert "`ppo.compile_step=true`, the preset's value now" in lines[2]  # the runs' own overrides are named
