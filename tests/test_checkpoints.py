"""Checkpoints that cannot run code, refuse broken or foreign files before acting, and survive kill -9, Ctrl-C and
a full or read-only disk: the run that resumes is the same run."""
import io
import json
import os
import pathlib
import pickle
import re
import shlex
import signal
import subprocess
import sys
import time
import zipfile

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torchrl.checkpoint import CheckpointError

from torchrl_gorl.training import (
    latest_checkpoint,
    load_checkpoint,
    prepare_run_outputs,
    remove_temporary_files,
    save_checkpoint,
)
from torchrl_gorl.training.checkpoint import TEMPORARY_MARKERS

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOTA = ROOT / "sota-implementations"


class _Payload:
    """Pickles to a call of ``os.system``: loading it with a full unpickler would create ``marker``."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _smoke_config(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(SOTA / "config"), version_base="1.3"):
        return OmegaConf.to_container(compose("gorl_ppo", ["preset=smoke", *overrides]), resolve=True)


def _run(run_dir: pathlib.Path, *overrides: str, preset: str = "smoke", **kwargs) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SOTA / "gorl_ppo.py"), f"preset={preset}", f"hydra.run.dir={run_dir}", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kwargs)


def _rewrite_member(archive: pathlib.Path, member: str, data: bytes) -> None:
    """Replaces one file inside a checkpoint archive (what an attacker or a broken copy could do)."""
    with zipfile.ZipFile(archive) as source:
        contents = {name: source.read(name) for name in source.namelist()}
    contents[member] = data
    with zipfile.ZipFile(archive, "w") as target:
        for name, value in contents.items():
            target.writestr(name, value)


def _member(archive: pathlib.Path, component: str, filename: str) -> str:
    with zipfile.ZipFile(archive) as source:
        return next(n for n in source.namelist() if f"-{component}/" in n and n.endswith(filename))


def _bytes_of(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------- the format
def test_checkpoint_round_trips_modules_json_and_rng_and_rotates(tmp_path):
    net = torch.nn.Linear(3, 2)
    first = save_checkpoint({"net": net, "progress": {"best_return": -float("inf"), "rows": [{"a": 1.5}]}},
                            tmp_path, step=10, metadata={"name": "first"})
    net.weight.data.add_(1.0)
    second = save_checkpoint({"net": net, "progress": {"iteration": 2}}, tmp_path, step=20)
    assert not first.exists() and latest_checkpoint(tmp_path) == second  # keep_last=1
    saved = load_checkpoint(tmp_path)  # a directory: its latest checkpoint
    assert torch.equal(saved["net"]["weight"], net.weight) and saved["progress"] == {"iteration": 2}
    kept = [save_checkpoint({"x": torch.ones(1)}, tmp_path / "all", step=s, keep_last=10) for s in (1, 2, 3)]
    assert all(p.exists() for p in kept)
    # the best by evaluation is kept beside the latest
    for step, value in ((1, 5.0), (2, 9.0), (3, 1.0)):
        save_checkpoint({"x": torch.ones(1)}, tmp_path / "best", step=step, metadata={"eval_return": value},
                        keep_best="eval_return")
    names = sorted(p.name for p in (tmp_path / "best").iterdir())
    assert names == ["checkpoint-000000000002.torchrl", "checkpoint-000000000003.torchrl"]


# --------------------------------------------------------------------------- hostile and broken files
def test_old_pickle_checkpoint_is_refused_without_running_its_code(tmp_path):
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"config": _Payload(marker), "dims": [17, 6]}, evil)
    with pytest.raises(CheckpointError, match=r"evil\.pt.*pickle format.*can run code"):
        load_checkpoint(evil)
    # a raw pickle (no zip container) too
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match=r"raw\.pt.*pickle format"):
        load_checkpoint(raw)
    # the script: refused at start-up, naming the key and the file, and the payload never ran
    result = _run(tmp_path / "run", f"checkpoint.resume={evil}")
    assert result.returncode != 0
    assert "config key checkpoint.resume" in result.stderr and "evil.pt" in result.stderr
    assert "pickle format" in result.stderr
    assert not marker.exists()


def test_pickle_payload_inside_a_checkpoint_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "pwned"
    path = save_checkpoint({"actor": torch.nn.Linear(2, 2), "progress": {"iteration": 1}}, tmp_path, step=1)
    _rewrite_member(path, _member(path, "actor", "state.pt"), _bytes_of({"weight": _Payload(marker)}))
    with pytest.raises(CheckpointError, match=r"checkpoint-000000000001\.torchrl.*'actor'.*not tensors and plain"):
        load_checkpoint(path)
    assert not marker.exists()


def test_tensordict_payload_with_a_pickled_field_is_refused(tmp_path):
    """TensorDict's memory-mapped payloads may hold pickled fields (``other.pickle``): the safe adapter reads only
    its own ``torch.load(weights_only=True)`` payload, whatever the manifest lists."""
    marker = tmp_path / "pwned"
    path = save_checkpoint({"actor": torch.nn.Linear(2, 2)}, tmp_path, step=1)
    state = _member(path, "actor", "state.pt")
    folder = state.rsplit("/", 1)[0]
    manifest = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    manifest["components"]["actor"]["files"] = ["state.json", "state/meta.json", "state/other.pickle"]
    with zipfile.ZipFile(path) as source:
        contents = {n: source.read(n) for n in source.namelist() if n != state}
    contents.update({"manifest.json": json.dumps(manifest).encode(), f"{folder}/state.json": b'{"kind": "dict"}',
                     f"{folder}/state/meta.json": b"{}", f"{folder}/state/other.pickle": pickle.dumps(_Payload(marker))})
    with zipfile.ZipFile(path, "w") as target:
        for name, value in contents.items():
            target.writestr(name, value)
    with pytest.raises(CheckpointError, match=r"'actor'.*expected one state\.pt payload"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("edit,message", [
    (lambda m: m["components"]["actor"].update(adapter="torchrl.state_dict"), "uses adapter 'torchrl.state_dict'"),
    (lambda m: m["metadata"].update(version=99), "is not a torchrl_gorl.run checkpoint of version 1"),
    (lambda m: m["metadata"].pop("format"), "is not a torchrl_gorl.run checkpoint"),
], ids=["torchrl_tensordict_adapter", "other_version", "no_format"])
def test_manifest_naming_another_adapter_or_format_is_refused(tmp_path, edit, message):
    """TorchRL's own state-dict adapter reads TensorDict payloads (which may unpickle): a manifest that names it, or
    another format or version, is refused before any payload is read."""
    path = save_checkpoint({"actor": torch.nn.Linear(2, 2)}, tmp_path, step=1)
    manifest = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    edit(manifest)
    _rewrite_member(path, "manifest.json", json.dumps(manifest).encode())
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_a_run_refuses_a_checkpoint_dir_with_another_runs_checkpoints(tmp_path):
    """A fresh run (or one resumed from an older file) beside newer checkpoints would have each of its own
    checkpoints deleted by the rotation: refused at start-up, naming the key and the resume command."""
    first = save_checkpoint({"progress": {"iteration": 1}}, tmp_path / "run" / "checkpoints", step=5, keep_last=5)
    save_checkpoint({"progress": {"iteration": 2}}, tmp_path / "run" / "checkpoints", step=9, keep_last=5)
    for extra in ([], [f"checkpoint.resume={first}"]):
        result = _run(tmp_path / "run", *extra)
        assert result.returncode != 0 and "config key checkpoint.dir" in result.stderr
        assert "checkpoint-000000000009.torchrl" in result.stderr and "eval return" not in result.stderr


def test_truncated_checkpoint_is_refused_naming_the_file(tmp_path):
    path = save_checkpoint({"actor": torch.nn.Linear(8, 8), "progress": {"iteration": 1}}, tmp_path, step=1)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=rf"{path.name}.*cannot be read: it is truncated or not a checkpoint"):
        load_checkpoint(path)
    result = _run(tmp_path / "run", f"checkpoint.resume={path}")
    assert result.returncode != 0 and "config key checkpoint.resume" in result.stderr
    assert "truncated or not a checkpoint" in result.stderr and path.name in result.stderr


def test_nan_weights_are_refused_naming_the_component_and_the_tensor(tmp_path):
    actor = torch.nn.Linear(2, 2)
    actor.weight.data[0, 1] = float("nan")
    path = save_checkpoint({"config": _smoke_config(), "dims": [17, 6], "actor": actor}, tmp_path, step=1)
    with pytest.raises(CheckpointError, match=r"'actor'.*weight holds NaN or infinite values"):
        load_checkpoint(path)
    result = _run(tmp_path / "run", f"checkpoint.resume={path}")
    assert result.returncode != 0 and "weight holds NaN or infinite values" in result.stderr
    assert path.name in result.stderr


@pytest.mark.parametrize("overrides,run_overrides,dims,message", [
    (["env.task=walker-walk"], [], [24, 6],
     "config key env.task = 'cheetah-run' does not match the resumed checkpoint's 'walker-walk'"),
    (["env.task=cheetah-run", "ppo.gae_lambda=0.9"], [], [17, 6],
     "config key ppo.gae_lambda = 0.95 does not match the resumed checkpoint's 0.9"),
    (["~config_version"], [], [17, 6], "config key config_version: the checkpoint's config has no config_version"),
    # the dims are checked once the env is known, after the collector's workers started: the run still exits
    (["collector.num_workers=2"], ["collector.num_workers=2"], [24, 6],
     "config key env.task: checkpoint dims [24, 6] != this task's [17, 6]"),
], ids=["another_task", "another_config", "before_config_version", "other_dims_with_workers"])
def test_checkpoint_of_another_task_or_config_is_refused_before_training(tmp_path, overrides, run_overrides, dims,
                                                                         message):
    """Checked against the checkpoint's config (before any env is built) and dims, before any weight is loaded or
    any env step runs."""
    saved = {"config": _smoke_config(*overrides), "dims": dims, "actor": torch.nn.Linear(2, 2)}
    path = save_checkpoint(saved, tmp_path / "other", step=1)
    result = _run(tmp_path / "run", f"checkpoint.resume={path}", *run_overrides)
    assert result.returncode != 0
    assert message in result.stderr and path.name in result.stderr
    assert "eval return" not in result.stderr


def test_prepare_run_outputs_loads_checks_and_clears_in_order(tmp_path):
    """No hydra: the library's start-up checks. A fresh run gets None; a resume gets the checkpoint with its path once
    the caller's check passed; each refusal names the key and the file; a killed write's leftovers are cleared."""
    run_dir, ckpt_dir = tmp_path / "run", tmp_path / "run" / "checkpoints"
    assert prepare_run_outputs(run_dir, ckpt_dir) is None and ckpt_dir.is_dir()
    path = save_checkpoint({"config": {"a": 1}, "actor": torch.nn.Linear(2, 2)}, ckpt_dir, step=5)
    (ckpt_dir / ".checkpoint-000000000009.stage-x").mkdir()  # what a kill during a write leaves
    seen = []
    saved = prepare_run_outputs(run_dir, ckpt_dir, ckpt_dir, check=seen.append)
    assert saved["config"] == {"a": 1} and saved["path"] == str(ckpt_dir) and seen == [saved]
    assert sorted(p.name for p in ckpt_dir.iterdir()) == [path.name]
    with pytest.raises(ValueError, match="config key checkpoint.resume: no checkpoint at"):
        prepare_run_outputs(run_dir, ckpt_dir, tmp_path / "nowhere")
    with pytest.raises(ValueError, match="config key checkpoint.dir: .* holds checkpoints up to"):
        prepare_run_outputs(tmp_path / "other", ckpt_dir)  # a fresh run would rotate the old run's files away

    def refuse(saved):
        raise ValueError("config key ppo.lr = 1 does not match")

    (ckpt_dir / ".checkpoint-000000000009.stage-y").mkdir()
    with pytest.raises(ValueError, match=re.escape(f"checkpoint '{path}': config key ppo.lr = 1 does not match")):
        prepare_run_outputs(run_dir, ckpt_dir, path, check=refuse)
    assert (ckpt_dir / ".checkpoint-000000000009.stage-y").exists()  # a refused start deletes nothing
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match="config key checkpoint.dir: cannot write to"):
        prepare_run_outputs(run_dir, tmp_path / "file" / "checkpoints")


def test_temporary_files_of_an_interrupted_write_are_removed(tmp_path):
    for name in (".checkpoint-000000000001.stage-abc", ".checkpoint-000000000001.torchrl.archive-abc",
                 ".eval.csv.tmp-123"):
        (tmp_path / name).mkdir() if "stage" in name else (tmp_path / name).write_bytes(b"x")
    (tmp_path / "eval.csv").write_text("kept")
    assert len(remove_temporary_files(tmp_path)) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["eval.csv"]


# --------------------------------------------------------------------------- outputs as the run goes
def _rows(path: pathlib.Path) -> list[dict]:
    lines = path.read_text().strip().splitlines()
    header = lines[0].split(",")
    return [{k: v for k, v in zip(header, line.split(",")) if not k.startswith("wall_time")} for line in lines[1:]]


def _summary(path: pathlib.Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith(("wall_time", "fps"))}


def _temporary_files(run_dir: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in run_dir.rglob(".*") if any(m in p.name for m in TEMPORARY_MARKERS)]


def _wait_for(predicate, process: subprocess.Popen, what: str, timeout: float = 600) -> None:
    end = time.time() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (status {process.returncode}) before {what}")
        if time.time() > end:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _start(run_dir: pathlib.Path, *overrides: str, preset: str) -> subprocess.Popen:
    """A run in a process group of its own (what a terminal's Ctrl-C or a kill of the group reaches)."""
    cmd = [sys.executable, str(SOTA / "gorl_ppo.py"), f"preset={preset}", f"hydra.run.dir={run_dir}", *overrides]
    log = open(run_dir.parent / f"{run_dir.name}.out", "ab")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _log_count(run_dir: pathlib.Path, text: str) -> int:
    log = run_dir / "gorl_ppo.log"
    return log.read_text().count(text) if log.exists() else 0


# the default preset's machinery (2 collector workers, compiled policy and one-graph step), sized to seconds: two
# 1,000-step iterations per stage, a checkpoint after each, and a decoder refit long enough to be killed in
KILL_RUN = ["collector.num_envs=4", "schedule.num_stages=2", "schedule.stage_frames=[2000,2000]",
            "schedule.decoder_data_iterations=1", "ppo.num_minibatches=4", "eval.num_evals=1", "eval.num_episodes=2",
            "eval.num_envs=2", "checkpoint.interval_frames=1000", "refit.batch_size=64", "refit.max_epochs=300",
            "refit.patience=300", "logger.progress_bar=false"]


@pytest.mark.slow
def test_kill_9_anywhere_then_resume_gives_the_uninterrupted_run(tmp_path):
    """SIGKILL of the whole process group mid-stage and again mid-refit, each time resumed from the latest
    checkpoint into the same run directory: eval.csv (each row written when made, none twice) and summary.json
    equal the uninterrupted run's (wall-clock aside), and nothing temporary is left behind."""
    whole = tmp_path / "whole"
    result = _run(whole, *KILL_RUN, preset="cpu_fast")
    assert result.returncode == 0, result.stderr[-4000:]

    killed = tmp_path / "killed"
    killed.mkdir()
    process = _start(killed, *KILL_RUN, preset="cpu_fast")
    # 1: mid-stage, once the first iteration's checkpoint is there and the second iteration runs
    _wait_for(lambda: latest_checkpoint(killed / "checkpoints") is not None, process, "the first checkpoint")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    rows_at_kill = _rows(killed / "eval.csv")
    assert len(rows_at_kill) >= 1  # the stage-start evaluation was on disk before the kill
    resume = f"checkpoint.resume={killed / 'checkpoints'}"
    (killed / "checkpoints" / ".checkpoint-000000000001.stage-planted").mkdir()  # as a kill mid-write leaves
    # 2: during the stage-0 decoder refit
    process = _start(killed, *KILL_RUN, resume, preset="cpu_fast")
    _wait_for(lambda: _log_count(killed, "decoder refit on") >= 1, process, "the decoder refit")
    time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert _log_count(killed, "stage 1 iteration 0: eval return") == 0  # the refit had not finished
    assert not (killed / "summary.json").exists()
    process = _start(killed, *KILL_RUN, resume, preset="cpu_fast")
    assert process.wait(timeout=900) == 0, (tmp_path / "killed.out").read_text()[-4000:]

    assert _rows(killed / "eval.csv") == _rows(whole / "eval.csv")
    assert _rows(killed / "eval.csv")[: len(rows_at_kill)] == rows_at_kill
    assert _summary(killed / "summary.json") == _summary(whole / "summary.json")
    assert _temporary_files(killed) == []


@pytest.mark.slow
def test_ctrl_c_checkpoints_exits_130_and_prints_the_resume_command(tmp_path):
    """SIGINT to the run's process group (a terminal's Ctrl-C, which the collector workers ignore): a final
    checkpoint, exit status 130 and the command that resumes; that command ends where the uninterrupted run does."""
    overrides = ["collector.num_workers=2", "collector.num_envs=4", "collector.unroll_length=250",
                 "schedule.stage_frames=[2000,2000]", "eval.num_evals=1", "logger.progress_bar=false"]
    whole = tmp_path / "whole"
    assert _run(whole, *overrides).returncode == 0
    run_dir = tmp_path / "interrupted"
    run_dir.mkdir()
    process = _start(run_dir, *overrides, preset="smoke")
    _wait_for(lambda: _log_count(run_dir, "stage 0 iteration 0: eval return") == 1, process, "the first evaluation")
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=300) == 130
    output = (tmp_path / "interrupted.out").read_text()
    assert "Interrupted: checkpoint" in output and "Resume with:" in output
    command = shlex.split(output.split("Resume with:")[1].strip().splitlines()[0])  # as a shell would read it
    assert command[0] == sys.executable and f"checkpoint.resume={latest_checkpoint(run_dir / 'checkpoints')}" in command
    saved = load_checkpoint(run_dir / "checkpoints")
    assert saved["progress"]["stage"] == 0 and saved["progress"]["iteration"] >= 1
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    assert _rows(run_dir / "eval.csv") == _rows(whole / "eval.csv")
    assert _summary(run_dir / "summary.json") == _summary(whole / "summary.json")


# --------------------------------------------------------------------------- read-only and full disks
@pytest.fixture
def tmpfs(tmp_path):
    """A small file system of its own (``mount -t tmpfs``, as root); skipped where mounting is not allowed."""
    mounts = []

    def mount(name: str, options: str) -> pathlib.Path:
        target = tmp_path / name
        target.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip() or 'not root'})")
        mounts.append(target)
        return target

    yield mount
    for target in mounts:
        subprocess.run(["umount", str(target)], capture_output=True)


def test_read_only_checkpoint_dir_fails_at_start_up_naming_the_key(tmp_path, tmpfs):
    read_only = tmpfs("ro", "ro,size=1m")
    result = _run(tmp_path / "run", f"checkpoint.dir={read_only / 'checkpoints'}")
    assert result.returncode != 0
    assert "config key checkpoint.dir: cannot write to" in result.stderr and "Read-only file system" in result.stderr
    assert "eval return" not in result.stderr  # before any compute
    # the run directory itself: hydra cannot create it, and says so, naming it, before the run starts
    result = _run(read_only / "run")
    assert result.returncode != 0
    assert f"Read-only file system: '{read_only / 'run'}'" in result.stderr and "eval return" not in result.stderr


def test_full_disk_fails_at_the_next_checkpoint_with_the_previous_one_intact(tmp_path, tmpfs):
    """Room for one checkpoint and its staging copy, not for a second beside it: the run stops at the second
    checkpoint, naming it and the error, and the first still loads; no temporary entry is left on the disk."""
    disk = tmpfs("full", "size=600k")
    result = _run(tmp_path / "run", f"checkpoint.dir={disk}", "checkpoint.interval_frames=2000")
    assert result.returncode != 0
    assert "could not be written to" in result.stderr and "No space left on device" in result.stderr
    assert "the previous checkpoint there is intact" in result.stderr
    saved = load_checkpoint(disk)
    assert saved["progress"]["iteration"] == 1 and saved["progress"]["stage"] == 0
    assert list(disk.iterdir()) == [latest_checkpoint(disk)]  # the first checkpoint, and nothing temporary


def test_offline_dataset_with_pickles_loads_as_tensors_without_running_them(tmp_path):
    """A saved decoder dataset (gmpo.py / gmpg.py's input) is read as memory-mapped tensors only: TorchRL's
    ``ReplayBuffer.loads`` would unpickle the buffer's ``prefetch.pkl``, which another person's file can fill."""
    from tensordict import TensorDict

    from torchrl_gorl.training import load_transitions, save_transitions

    marker = tmp_path / "pwned"
    data = TensorDict({"observation": torch.randn(6, 3), "action": torch.randn(6, 2)}, [6])
    path = save_transitions(data, tmp_path / "stage0")
    (path / "buffer" / "prefetch.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    loaded = load_transitions(path)[:]
    assert torch.equal(loaded["observation"], data["observation"]) and not marker.exists()
