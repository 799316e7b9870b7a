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


def test_stages_prints_first_best_last_of_each_stage(runs):
    """`stages` reads each stage's first, best and last evaluation off the committed eval.csv of every seed."""
    assert "seed1 stage 1: first 168 @ 1.01M, best 683 @ 1.93M, last 674 @ 1.94M" in runs.stage_evals(
        "finger-spin", "gorl_flow")
    for method in ("gorl_flow", "gorl_diffusion"):
        seeds = runs.stage_points("finger-spin", method)
        assert len(seeds) >= 2 and all(sorted(stages) == [0, 1, 2, 3] for stages in seeds.values())
    elsewhere = runs.stage_points("cheetah-run", "gorl_flow", ROOT / "results" / "default_preset")
    assert sorted(elsewhere) == ["seed1", "seed2", "seed3"] and sorted(elsewhere["seed1"]) == [0, 1, 2, 3]


def test_windows_command_reads_a_committed_train_log(runs):
    """`windows` prints min / median / max of a saved run's column per env-step window and its first crossings
    (FPO seed 3 on finger-spin, from its committed train_log.csv)."""
    cfm = runs.windows("finger-spin", "fpo", 3, "cfm_loss", [2.0, 2.4], [1.5, 10])
    assert cfm[0].endswith("max 0.733")
    assert cfm[-2] == "cfm_loss first above 1.5: 1.64 @ 2.14M"
    assert cfm[-1] == "cfm_loss first above 10: 10.6 @ 2.27M"
    clip = runs.windows("finger-spin", "fpo", 3, "clip_fraction", [2.0, 2.4])
    kl = runs.windows("finger-spin", "fpo", 3, "kl_approx", [2.0, 2.4])
    assert "median 0.0555" in clip[0] and "median 0.893" in clip[-1] and "median 0.00123" in kl[0] and "median 1.4" in kl[-1]
    with pytest.raises(ValueError, match="no column 'nope'"):
        runs.windows("finger-spin", "fpo", 3, "nope", [])


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


def test_fpo_collapse_rows_are_read_off_the_committed_runs(runs):
    """The generated FPO collapse rows: best, collapse step and CFM blow-up per seed; no collapse where none was."""
    rows = runs.collapse_rows(runs.load_runs())
    finger = [row for row in rows if row.startswith("| finger-spin |")]
    assert finger == ["| finger-spin | 1 | 811 @ 2.06M | 2.38M (then at most 57) | 2.29M |",
                      "| finger-spin | 2 | 808 @ 1.74M | 2.06M (then at most 40) | 1.90M |",
                      "| finger-spin | 3 | 884 @ 2.06M | 2.38M (then at most 55) | 2.27M |"]
    assert all("| no |" in row or "n/a (best under 100)" in row for row in rows if not row.startswith("| finger-spin"))


def test_summaries_command_reads_the_default_command_runs(runs, monkeypatch):
    """`summaries` reads the committed summary.json and eval.csv files: final on fresh episodes, best, last, training
    minutes, and the sample std over seeds."""
    monkeypatch.setattr(runs, "RESULTS", ROOT / "results" / "default_preset")
    lines = runs.summaries()
    assert lines[0] == ("cheetah-run/gorl_flow/seed1: final 539, best 549, last 501 at 3.02M env steps, "
                        "9.6 min of training")
    assert lines[-1] == ("cheetah-run/gorl_flow (3 seeds): final 564 +- 50 (531-622), best 606 +- 70 (549-684), "
                         "last 520 +- 37 (496-563), minutes 11.5 (9.6-12.8)")
    assert runs.summaries(ROOT / "results" / "time_to_score")[0].startswith("cheetah-run/gorl_flow/seed1: final ")


def test_time_to_score_cells_are_read_off_the_saved_runs(runs, tmp_path):
    """The time-to-score table's cells: cheetah-run GoRL seed 3 reaches 400 at its third evaluation, with the one-graph
    step and with compiled losses; the runs' own overrides are named; a run that never gets there or is missing."""
    lines = runs.time_to_score_lines()
    cheetah_gorl = next(line for line in lines if line.startswith("| cheetah-run | 400 | GoRL"))
    assert cheetah_gorl.split(" | ")[3].endswith("/ 2.2 (0.69M)")
    assert cheetah_gorl.split(" | ")[4].endswith("/ 2.7 (0.69M)")
    assert "`ppo.compile_step=true`, the preset's value now" in lines[0]
    path = tmp_path / "eval.csv"
    path.write_text("frames_total,wall_time_train_s,return_mean\n0,10,0\n500000,120,350\n1000000,240,380\n")
    assert runs.reach_cell(path, 400.0) == "not in 1.00M (4.0 min; best 380)"
    assert runs.reach_cell(path, 300.0) == "2.0 (0.50M)"
    assert runs.reach_cell(path, 300.0, fps=1000.0) == "8.3 (0.50M)"  # estimated: env steps / rate
    assert runs.reach_cell(tmp_path / "missing.csv", 300.0) == "not run"
