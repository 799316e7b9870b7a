"""Numbers in the docs live in generated blocks: each block equals what its script rebuilds from the saved runs, and
the scripts compute what the docs say they do."""
import csv
import importlib.util
import json
import math
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import docblocks  # noqa: E402


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def hopper():
    return _module("hopper_15m")


@pytest.fixture(scope="module")
def regenerated():
    return docblocks.blocks()


def test_every_generated_block_equals_its_regeneration(regenerated):
    """Every number the README and docs/ quote from a run or a benchmark stands in a block that its owner rebuilds
    from the saved files; a block that differs from the rebuild is stale."""
    stale = [f"{path.relative_to(ROOT)}: {name}" for (path, name), body in regenerated.items()
             if docblocks.read_block(path, name) != body]
    assert not stale, f"stale blocks {stale}; run python benchmarks/docblocks.py"


def test_every_block_in_the_docs_has_an_owner(regenerated):
    """No block is left that nothing rebuilds (a renamed or orphaned block would never be checked)."""
    found = {(path, name) for path in docblocks.documents() for name in docblocks.block_names(path)}
    assert found == set(regenerated), sorted(f"{p.name}: {n}" for p, n in found ^ set(regenerated))
    assert docblocks.block_names(ROOT / "README.md")[0] == "default-command"


def test_write_block_replaces_only_the_block(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- gen:x -->\nold\n<!-- /gen:x -->\nafter\n")
    assert docblocks.write_block(doc, "x", "new $1 \\1 text")  # no regex escapes in the body
    assert doc.read_text() == "before\n<!-- gen:x -->\nnew $1 \\1 text\n<!-- /gen:x -->\nafter\n"
    assert not docblocks.write_block(doc, "x", "new $1 \\1 text")
    with pytest.raises(ValueError, match="must hold <!-- gen:y -->"):
        docblocks.read_block(doc, "y")


def test_write_block_in_rst_keeps_the_markers_in_comments(tmp_path):
    doc = tmp_path / "doc.rst"
    doc.write_text("Title\n=====\n\n.. <!-- gen:x -->\n\n.. <!-- /gen:x -->\n\nafter\n")
    assert docblocks.write_block(doc, "x", "Measured ``1.0``.")
    assert doc.read_text() == "Title\n=====\n\n.. <!-- gen:x -->\n\nMeasured ``1.0``.\n\n.. <!-- /gen:x -->\n\nafter\n"
    assert docblocks.read_block(doc, "x") == "Measured ``1.0``."
    assert not docblocks.write_block(doc, "x", "Measured ``1.0``.")


def test_saved_runs_are_ordered_by_run_number(tmp_path, monkeypatch):
    """The blocks read "the latest run" as the highest run number, not the last name in text order."""
    monkeypatch.setattr(docblocks, "BENCH", tmp_path)
    for n in (9, 10, 2):
        (tmp_path / f"bench_2core_run{n}.txt").write_text(f'noise\n{{"run": {n}}}\ntrailing text\n')
    (tmp_path / "bench_2core_run3_profile.txt").write_text("not a run of this stem")
    runs = docblocks.runs_of("bench_2core_run")
    assert [p.name for p in runs] == ["bench_2core_run2.txt", "bench_2core_run9.txt", "bench_2core_run10.txt"]
    assert docblocks.last_json(runs[-1]) == {"run": 10}


def _write_run(root: pathlib.Path, method: str, seed: int, returns: list[tuple[int, float, float]],
               refits=(), std=None) -> None:
    """A saved run: eval rows (stage, env steps, return), a summary and, optionally, the latent std log."""
    run = root / method / f"seed{seed}"
    run.mkdir(parents=True)
    with open(run / "eval.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["stage", "frames_total", "wall_time_train_s", "return_mean"])
        writer.writerows([[stage, steps, steps / 4000, value] for stage, steps, value in returns])
    summary = {"final_return": returns[-1][2] + 1, "best_eval_return": max(r[2] for r in returns),
               "wall_time_train_s": 3600.0 * seed, "refits": list(refits)}
    (run / "summary.json").write_text(json.dumps(summary))
    if std is not None:
        with open(run / "train_log.csv", "w", newline="") as f:
            csv.writer(f).writerows([["frames_total", "latent_scale_mean"], *std])


def test_hopper_report_reads_the_runs(hopper, tmp_path, monkeypatch):
    monkeypatch.setattr(hopper, "RESULTS", tmp_path)
    assert hopper.verdict() == "The hopper-stand runs at 15M env steps are not finished yet."
    monkeypatch.setattr(hopper, "RESULTS", tmp_path / "one")
    _write_run(tmp_path / "one", "gorl_flow", 1, [(0, 0, 1.0), (1, 15_000_000, 100.0)], refits=[], std=[])
    _write_run(tmp_path / "one", "ppo_gaussian", 1, [(0, 0, 1.0), (0, 15_000_000, 10.0)])
    one = hopper.verdict()  # one seed each: no spread to judge the difference by
    assert ("GoRL is ahead of Gaussian PPO by 90 (GoRL and Gaussian PPO: one seed, no spread over seeds to compare it "
            "with)") in one
    assert "Preliminary: 1 and 1 of 3 seeds are finished." in one
    assert "GoRL (flow) scores 100 (n=1) and Gaussian PPO 10 (n=1)" in one and "± 0" not in one  # no sd of one seed
    monkeypatch.setattr(hopper, "RESULTS", tmp_path)
    for seed, (a, b) in enumerate([(100, 10), (200, 20), (300, 30)], start=1):
        gorl = [(0, 0, 1.0), (0, 5_000_000, 50.0), (1, 7_000_000, a / 2), (1, 15_120_000, float(a))]
        _write_run(tmp_path, "gorl_flow", seed, gorl, refits=[{"stage": 0, "best_val_loss": 0.25}],
                   std=[[1_000_000, 0.9], [4_900_000, 0.5], [7_500_000, 0.8]])
        _write_run(tmp_path, "ppo_gaussian", seed, [(0, 0, 1.0), (0, 8_000_000, b / 2), (0, 15_120_000, float(b))])
    # the last evaluation at or before a budget (at 15M: the one at 7M, a / 2); past a run's end: NaN
    columns = hopper.load("gorl_flow")[3][0]
    assert hopper.value_at(columns, 15e6) == 150.0 and hopper.value_at(columns, 3e6) == 1.0
    assert math.isnan(hopper.value_at(columns, 16e6))
    table = hopper.table()
    assert "| GoRL (flow) | 1 ± 0 (n=3) | 100 ± 50 (n=3) | 100 ± 50 (n=3) | 201 ± 100 (n=3) | 200 ± 100 (n=3) | " \
           "1.00-3.00 | 80 |" in table
    assert "| Gaussian PPO | 1 ± 0 (n=3) | 1 ± 0 (n=3) | 10 ± 5 (n=3) |" in table
    sentence = hopper.verdict()
    assert "GoRL (flow) scores 100 ± 50 (n=3) and Gaussian PPO 10 ± 5 (n=3) (mean ± sd over n seeds)" in sentence
    assert "GoRL is ahead of Gaussian PPO by 90, more than the spread over seeds (the sum of the two sds, 55)" in sentence
    assert "ahead in 3 of 3 paired seeds" in sentence and "Preliminary" not in sentence
    why = hopper.why().splitlines()
    assert why[2] == "| 1 | 0 | 1 | 50 | identity | 0.50 |"
    assert why[3] == "| 1 | 1 | 50 (+0) | 100 | 0.250 | 0.80 |"


def test_hopper_decoder_table_reads_its_json(hopper, tmp_path):
    path = tmp_path / "decoder_actions.json"
    assert hopper.decoder_table(path) == "The decoder figure has not been made yet."
    path.write_text(json.dumps({"gorl_run": "gorl_flow/seed2", "ppo_run": "ppo_gaussian/seed1", "state_steps": [0, 900],
                                "num_samples": 10, "bound": 0.99, "decoder_at_bound": [0.5, 0.25],
                                "gorl_policy_at_bound": [1.0, 0.0], "gaussian_at_bound": [0.1, 0.125]}))
    lines = hopper.decoder_table(path).splitlines()
    assert lines[0].startswith("Runs: GoRL `gorl_flow/seed2`") and "Gaussian PPO `ppo_gaussian/seed1`" in lines[0]
    assert lines[-2:] == ["| 0 | 50% | 100% | 10% |", "| 900 | 25% | 0% | 12% |"]


def test_hopper_boundary_table_reads_its_jsons(hopper, tmp_path, monkeypatch):
    monkeypatch.setattr(hopper, "BOUNDARIES", tmp_path)
    assert hopper.boundary_table() == "No run's stage boundaries have been scored yet."
    row = {"stage": 0, "episodes": 32, "best_eval": 447.3, "stage_evals": 11, "eval_episodes": 8,
           "next_first_eval": 97.9, "fresh_reproduced": True, "best_deterministic": 224.1, "best_stochastic": 61.1,
           "best_unit_noise": 78.7, "refit_prior_mean": 214.3, "refit_prior": 66.9, "fresh_encoder": 28.8,
           "latent_std": 4.875, "fresh_latent_mean_abs": 0.081, "data_action_abs_mean": 1.234,
           "data_action_abs_p99": 7.5}
    (tmp_path / "gorl_flow_seed3.json").write_text(json.dumps([row, {**row, "stage": 1}]))
    lines = hopper.boundary_table().splitlines()
    # the copy's share of the data policy's return beside it: 66.9 / 61.1
    assert lines[2] == ("| GoRL (flow), seed 3 | 0 | 447 | 224 | 61 | 79 | 214 | 67 (1.09) | 29 | 4.88 | 0.081 | "
                        "1.23, 7.50 |")
    assert lines[3].startswith("| GoRL (flow), seed 3 | 1 |") and len(lines[0].split("|")) == len(lines[2].split("|"))
    assert "the best of its 11 evaluations of 8 episodes" in lines[-1] and "same 32 deterministic-start" in lines[-1]
    assert "gives each run's own first evaluation of the next stage exactly" in lines[-1]
    (tmp_path / "gorl_flow_seed1.json").write_text(json.dumps([{**row, "fresh_reproduced": False}]))
    assert "the rebuild is wrong" in hopper.boundary_table()  # a wrong rebuild is said, not hidden
    older = {key: value for key, value in row.items() if not key.startswith("data_action")}
    (tmp_path / "gorl_flow_seed1.json").write_text(json.dumps([older]))  # scored before the action column
    assert hopper.boundary_table().splitlines()[2].endswith("| 0.081 | n/a |")
    # rows in the order of the methods (the reference first), then of the seeds, whatever the file names sort as
    (tmp_path / f"{hopper.REMEDY_METHOD}_seed1.json").write_text(json.dumps([row]))
    runs = [line.split(" | ")[0] for line in hopper.boundary_table().splitlines()[2:6]]
    assert runs == ["| GoRL (flow), seed 1", "| GoRL (flow), seed 3", "| GoRL (flow), seed 3",
                    f"| {hopper.METHODS[hopper.REMEDY_METHOD]}, seed 1"]


def test_hopper_remedy_boundaries_compare_the_copies(hopper, tmp_path, monkeypatch):
    monkeypatch.setattr(hopper, "BOUNDARIES", tmp_path)
    row = {"best_stochastic": 200.0, "refit_prior": 50.0, "data_action_abs_mean": 10.0}
    (tmp_path / "gorl_flow_seed3.json").write_text(json.dumps([row, {**row, "refit_prior": 30.0}]))
    assert hopper.boundary_copies() == ""  # nothing to compare before the remedy's stage ends are scored
    (tmp_path / f"{hopper.REMEDY_METHOD}_seed1.json").write_text(json.dumps(
        [{**row, "refit_prior": 180.0, "data_action_abs_mean": 2.0}, {**row, "refit_prior": 100.0,
                                                                     "data_action_abs_mean": 3.0}]))
    (tmp_path / f"{hopper.REMEDY_METHOD}_seed2.json").write_text(json.dumps(  # on the ground: no share counted
        [{**row, "best_stochastic": 6.0, "refit_prior": 6.0, "data_action_abs_mean": 4.0}]))
    sentence = hopper.boundary_copies()
    assert (f"(`{hopper.REMEDY_METHOD}` seeds 1, 2; the boundary table) where the data policy stands (scores 100 or "
            "more), the refit's copy keeps 0.70 of the data policy's return on average (per stage end: 0.90 / 0.50) "
            "against 0.20 for the refits on the actions as collected (`gorl_flow` seed 3)") in sentence
    assert sentence.endswith("mean absolute pre-tanh action 3.0 against 10.0.")


def test_hopper_refit_budget_table_reads_its_jsons(hopper, tmp_path, monkeypatch):
    monkeypatch.setattr(hopper, "REFIT_BUDGET", tmp_path)
    assert hopper.refit_budget_table() == "No refit has been redone yet."
    budget = {"max_epochs": 30, "epochs_run": 30, "best_epoch": 29, "best_val_loss": 11.524, "minutes": 4.0,
              "val_losses": [12.0, 11.524], "prior": 171.4, "prior_mean": 339.3}
    (tmp_path / "gorl_flow_seed3_stage1.json").write_text(json.dumps(
        {"run": "gorl_flow/seed3", "stage": 1, "rows": 400000, "episodes": 32, "data_policy": 650.3,
         "budgets": [budget, {**budget, "max_epochs": 150, "epochs_run": 61, "best_epoch": 55},
                     {**budget, "clip": 3.0}]}))
    lines = hopper.refit_budget_table().splitlines()
    assert lines[2] == "| GoRL (flow), seed 3, stage 1 | 650 | 30 | as collected | 30 (30) | 11.52 | 171 | 339 | 4.0 |"
    assert lines[3].startswith("| GoRL (flow), seed 3, stage 1 | 650 | 150 | as collected | 61 (56) |")
    assert lines[4].startswith("| GoRL (flow), seed 3, stage 1 | 650 | 30 | clamped to ±3 | 30 (30) |")
    assert "the same 400,000 rows" in lines[-1] and "same 32 episodes" in lines[-1]


@pytest.mark.parametrize("clip", [0.0, -3.0, float("nan")])
def test_hopper_refit_rejects_a_bad_clip_before_reading_anything(tmp_path, clip):
    refit = _module("hopper_refit")
    with pytest.raises(SystemExit, match=f"--clip must be positive, got {clip}"):
        refit.refit_budgets(tmp_path / "run", tmp_path / "no_checkpoints", 1, [30], clip=clip)


@pytest.mark.slow
def test_stage_boundaries_of_a_smoke_run_rebuild_the_fresh_encoder_exactly(hopper, tmp_path):
    """Two smoke stages on hopper-stand keeping every checkpoint, then the boundary scores of its one refit."""
    import os
    import subprocess
    import sys

    from hopper_decoder import BOUNDARY_SCORES, stage_boundaries

    run = tmp_path / "gorl_flow" / "seed2"
    subprocess.run([sys.executable, str(ROOT / "sota-implementations" / "gorl_ppo.py"), "preset=smoke",
                    "env.task=hopper-stand", "env.seed=2", "checkpoint.keep_all=true", "checkpoint.interval_frames=2000",
                    f"hydra.run.dir={run}"], check=True, env={**os.environ, "MUJOCO_GL": "egl"}, capture_output=True)
    (boundary,) = stage_boundaries(run, run / "checkpoints")
    assert boundary["stage"] == 0 and boundary["fresh_reproduced"] is True
    assert set(BOUNDARY_SCORES) <= boundary.keys() and boundary["stage_evals"] == 3
    assert boundary["latent_std"] > 0 and boundary["fresh_latent_mean_abs"] > 0
    assert boundary["data_action_abs_p99"] > boundary["data_action_abs_mean"] > 0  # pre-tanh: may exceed 1


def test_hopper_remedy_sentence_and_the_rule_that_adopts_it(hopper, tmp_path, monkeypatch):
    monkeypatch.setattr(hopper, "REFIT_BUDGET", tmp_path / "no_refit_budget")
    monkeypatch.setattr(hopper, "BOUNDARIES", tmp_path / "no_boundaries")

    def remedy(base: list[float], fix: list[float]) -> str:
        root = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        for seed, value in enumerate(base, start=1):
            _write_run(root, "gorl_flow", seed, [(0, 0, 1.0), (3, 15_000_000, value)],
                       refits=[{"stage": 2, "best_epoch": 29, "epochs_run": 30, "best_val_loss": 12.0},
                               {"stage": 0, "best_epoch": 20, "epochs_run": 30, "best_val_loss": 8.0}])
        for seed, value in enumerate(fix, start=1):
            _write_run(root, hopper.REMEDY_METHOD, seed, [(0, 0, 1.0), (3, 15_000_000, value)],
                       refits=[{"stage": 2, "best_epoch": 140, "epochs_run": 150, "best_val_loss": 10.0}])
        monkeypatch.setattr(hopper, "RESULTS", root)
        return hopper.remedy()

    assert remedy([100.0], []).endswith("Its runs have not been made yet.")
    assert remedy([100.0], []).startswith("The refit is fit to the data policy's pre-tanh actions as collected")
    # seeds 1-2 finished: ahead on their mean (165 against 150) and in 1 of 2; the third seed is missing
    partial = remedy([100.0, 200.0, 300.0], [150.0, 180.0])
    assert "scores 165 ± 21 (n=2) against 150 ± 71 (n=2) over the same seeds, ahead in 1 of 2" in partial
    assert "the reference schedule stays the default" in partial and "2 of 3 paired seeds are finished" in partial
    adopted = remedy([100.0, 200.0, 300.0], [150.0, 180.0, 400.0])  # mean 243 against 200, 2 of 3 seeds
    assert "scores 243 ± 137 (n=3) against 200 ± 100 (n=3) over the same seeds, ahead in 2 of 3" in adopted
    assert "it meets the rule to replace the reference schedule as the default" in adopted
    # where the refit acts: the stage starts after a refit (here stage 3 of each seed) and the refits' loss
    assert ("Its 3 stage starts after a refit score 243 on average (+242 from the previous stage's best) against "
            "the reference's 200 (+199), the same stages' best evaluations average 243 against 200, and its refits "
            "end at a validation loss of 10.00 on average against 12.00 "
            "(each on its own run's data") in adopted
    assert adopted.splitlines()[-1] == "| 3 | 3 | 400 (+399) | 400 | 10.000 | n/a |"  # the remedy's own table
    assert "Its 2 stage starts" in partial  # over the paired seeds only
    # each condition alone is not enough: 2 seeds won but a lower mean; a higher mean but 1 seed won
    assert "stays the default" in remedy([100.0, 200.0, 900.0], [110.0, 210.0, 300.0])
    assert "stays the default" in remedy([100.0, 200.0, 300.0], [90.0, 190.0, 900.0])


def test_the_remedy_run_is_a_valid_config(hopper, tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir

    from torchrl_gorl.configs import validate_config

    import learning_runs

    script, overrides = learning_runs.METHODS[hopper.REMEDY_METHOD]
    config_dir = str(ROOT / "sota-implementations" / "config")
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        cfg = compose(script.removesuffix(".py"), ["preset=cpu_fast_15m", "env.task=hopper-stand", *overrides])
        reference = compose("gorl_ppo", ["preset=cpu_fast_15m", "env.task=hopper-stand"])
    validate_config(cfg, method="gorl")
    # one change: the refit's targets clamped, by the bound the remedy sentence names
    assert cfg.refit.action_clip == hopper.REMEDY_CLIP and reference.refit.action_clip is None
    cfg.refit.action_clip = None
    assert cfg == reference
    # the sentence quotes the redone refits with and without the clamp, at the same epoch budget only
    monkeypatch.setattr(hopper, "REFIT_BUDGET", tmp_path)
    (tmp_path / "gorl_flow_seed3_stage2.json").write_text(json.dumps(
        {"run": "gorl_flow/seed3", "stage": 2, "data_policy": 642.3, "budgets": [
            {"max_epochs": 30, "clip": None, "prior": 188.0, "prior_mean": 363.9},
            {"max_epochs": 150, "prior": 275.9, "prior_mean": 493.7},
            {"max_epochs": 30, "clip": 3.0, "prior": 473.6, "prior_mean": 666.4}]}))
    cause = hopper.refit_cause()
    assert ("Redone on gorl_flow seed3's stage-2 data with 30 epochs, clamping them to ±3 takes the copy of the data "
            "policy (642) from 188 to 474 and the decoder at z = 0 from 364 to 666.") in cause
    assert cause.count("Redone") == 1 and cause.endswith("(`refit.action_clip=3`), every other setting as the "
                                                         "reference's.")