"""Run checkpoints on :mod:`torchrl.checkpoint` that load tensors, plain containers and JSON only.

A checkpoint is one ``.torchrl`` archive of named components: JSON values (config, run progress) through TorchRL's
:class:`~torchrl.checkpoint.JSONCheckpointAdapter`, and state dicts (modules, optimiser, RNGs, collector and env
state) through :class:`SafeStateDictAdapter`, which reads nothing but a ``torch.load(weights_only=True)`` payload.
No code a checkpoint carries can run when it is loaded, so a shared checkpoint is as safe to resume as a tensor file.
"""
from __future__ import annotations

import math
import os
import pathlib
import pickle  # for its error type only: nothing here unpickles
import shutil
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torchrl.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointRotation,
    JSONCheckpointAdapter,
    StateDictCheckpointAdapter,
)

#: written into every manifest's metadata; a checkpoint without it is not a torchrl_gorl run checkpoint
CHECKPOINT_FORMAT = "torchrl_gorl.run"
#: the version of what the components hold; bump it when their layout changes
CHECKPOINT_VERSION = 1
#: file name prefix of rotated checkpoints (``checkpoint-<env steps>.torchrl``)
PREFIX = "checkpoint"
#: names of the temporary files an interrupted write can leave: TorchRL's staging, archive, backup and delete
#: entries, and :func:`atomic_write_text`'s
TEMPORARY_MARKERS = (".stage-", ".archive-", ".backup-", ".delete-", ".tmp-")


class SafeStateDictAdapter(StateDictCheckpointAdapter):
    """TorchRL's state-dict adapter restricted to what cannot run code: the payload is written with
    :func:`torch.save` and read with ``torch.load(weights_only=True)`` (tensors, numbers, strings and plain
    containers); any other payload (TensorDict's memory-mapped directories may hold pickled fields) is refused, and
    so is a floating-point tensor with NaN or infinite entries, before the component's ``load_state_dict`` runs.

    Examples:
        >>> import tempfile
        >>> import torch
        >>> from torchrl.checkpoint import Checkpoint
        >>> from torchrl_gorl.training.checkpoint import SafeStateDictAdapter
        >>> source, target = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = Checkpoint().register("net", source, adapter=SafeStateDictAdapter()).save(f"{tmp}/ckpt")
        ...     _ = Checkpoint().register("net", target, adapter=SafeStateDictAdapter()).load(f"{tmp}/ckpt")
        >>> torch.equal(source.weight, target.weight)
        True
    """

    adapter_id = "torchrl_gorl.safe_state_dict"

    def __init__(self) -> None:
        super().__init__(payload_format="torch")

    def load(self, component: Any, path: pathlib.Path, *, map_location: Any, tensor_load_kwargs: Mapping[str, Any],
             args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        files = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
        if files != [self.state_torch]:
            raise CheckpointError(f"expected one {self.state_torch} payload, found {files}")
        try:
            state = torch.load(path / self.state_torch, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as error:  # weights_only refuses any global not a tensor or plain container
            raise CheckpointError(f"its payload is not tensors and plain containers ({error})") from None
        except (RuntimeError, OSError, EOFError) as error:
            raise CheckpointError(f"its payload cannot be read ({type(error).__name__}: {error})") from None
        bad = _first_non_finite(state)
        if bad is not None:
            raise CheckpointError(f"{bad} holds NaN or infinite values")
        component.load_state_dict(state, *args, **kwargs)
        return None


def _first_non_finite(value: Any, name: str = "") -> str | None:
    """The key path of the first floating-point tensor or float with a NaN or infinite entry, else None."""
    if torch.is_tensor(value):
        return name or "tensor" if value.is_floating_point() and not torch.isfinite(value).all() else None
    if isinstance(value, float):
        return name or "value" if not math.isfinite(value) else None
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        bad = _first_non_finite(item, f"{name}.{key}" if name else str(key))
        if bad is not None:
            return bad
    return None


class _State:
    """A plain state dict as a checkpoint component: saved as it is, loaded into ``value``."""

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def state_dict(self) -> Any:
        return self.value

    def load_state_dict(self, state: Any) -> None:
        self.value = state


def _is_json(value: Any) -> bool:
    """JSON values (nested dicts with string keys, lists, numbers, strings, None) go through the JSON adapter."""
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_json(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def save_checkpoint(components: Mapping[str, Any], directory: str | os.PathLike, *, step: int,
                    keep_last: int = 1, metadata: Mapping[str, Any] | None = None,
                    keep_best: str | None = None) -> pathlib.Path:
    """Writes ``components`` as one checkpoint ``<directory>/checkpoint-<step>.torchrl`` through TorchRL's
    :class:`~torchrl.checkpoint.CheckpointRotation`, then deletes all but the ``keep_last`` newest (and, with
    ``keep_best``, the one with the highest ``metadata[keep_best]``).

    Each component is an object with ``state_dict`` (a module, an optimiser, :class:`~torchrl.checkpoint.GlobalRNGState`,
    a collector), a JSON value (config, progress), or a state dict (nested dicts of tensors). The write is atomic:
    a crash or a full disk leaves the checkpoints already there intact (and at most temporary entries, which
    :func:`remove_temporary_files` deletes).

    Examples:
        >>> import tempfile
        >>> import torch
        >>> from torchrl_gorl.training import load_checkpoint, save_checkpoint
        >>> net = torch.nn.Linear(2, 1)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = save_checkpoint({"net": net, "progress": {"iteration": 3}}, tmp, step=3)
        ...     saved = load_checkpoint(path)
        >>> path.name, saved["progress"], torch.equal(saved["net"]["weight"], net.weight)
        ('checkpoint-000000000003.torchrl', {'iteration': 3}, True)
    """
    checkpoint = Checkpoint(format="archive")
    for name, component in components.items():
        if _is_json(component):
            checkpoint.register(name, component, adapter=JSONCheckpointAdapter())
        else:
            holder = component if hasattr(component, "state_dict") else _State(component)
            checkpoint.register(name, holder, adapter=SafeStateDictAdapter())
    meta = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **(metadata or {})}
    rotation = CheckpointRotation(directory, keep_last=keep_last, prefix=PREFIX,
                                  keep_best=(keep_best, "max") if keep_best else None)
    return rotation.save(checkpoint, step=int(step), metadata=meta)


def latest_checkpoint(directory: str | os.PathLike) -> pathlib.Path | None:
    """The newest checkpoint :func:`save_checkpoint` wrote in ``directory``, or None."""
    return CheckpointRotation(directory, keep_last=1, prefix=PREFIX).latest()


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Reads a checkpoint written by :func:`save_checkpoint` (a file, or a directory of them: the newest) into a
    dict of plain values: JSON components as they were saved, state-dict components as state dicts.

    Nothing is unpickled but tensors and plain containers (``weights_only=True``). Raises
    :class:`~torchrl.checkpoint.CheckpointError` naming the file and what is wrong for: a file in the pickle format
    of torchrl_gorl before this one, a truncated or foreign file, a payload that is not tensors and plain
    containers, and NaN or infinite values.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"no checkpoint in directory {str(path)!r}.")
        path = latest
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist.")
    if _is_pickle_checkpoint(path):
        raise CheckpointError(
            f"checkpoint {str(path)!r} is in the pickle format of torchrl_gorl before checkpoint version "
            f"{CHECKPOINT_VERSION} (torch.save of Python objects), which can run code when loaded: it is not "
            "loaded. Resume it with the code that wrote it, or start the run again.")
    try:
        manifest = Checkpoint.manifest(path)
    except (CheckpointError, OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read: it is truncated or not a checkpoint "
                              f"({type(error).__name__}: {error}).") from None
    meta = manifest.get("metadata") or {}
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a {CHECKPOINT_FORMAT} checkpoint of version "
                              f"{CHECKPOINT_VERSION} (its metadata: format {meta.get('format')!r}, version "
                              f"{meta.get('version')!r}).")
    checkpoint, holders = Checkpoint(format="archive"), {}
    for name, record in manifest["components"].items():
        if record.get("adapter") == JSONCheckpointAdapter.adapter_id:
            checkpoint.register(name, None, adapter=JSONCheckpointAdapter())
        elif record.get("adapter") == SafeStateDictAdapter.adapter_id:
            holders[name] = _State()
            checkpoint.register(name, holders[name], adapter=SafeStateDictAdapter())
        else:
            raise CheckpointError(f"checkpoint {str(path)!r}: component {name!r} uses adapter "
                                  f"{record.get('adapter')!r}, which this loader does not read (it may unpickle).")
    try:
        result = checkpoint.load(path, map_location=map_location)
    except (CheckpointError, OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"checkpoint {str(path)!r} is refused: {error}") from None
    return {**result.values, **{name: holder.value for name, holder in holders.items()}}


def check_checkpoint_dir(directory: str | os.PathLike, resume: str | os.PathLike | None = None,
                         key: str = "checkpoint.dir") -> None:
    """Refuses to start a run whose checkpoint ``directory`` holds checkpoints it does not resume from: their newer
    files would outrank, and the rotation would delete, every checkpoint the run writes. ``resume`` is the checkpoint
    (a file, or a directory: its newest) the run continues from; ``key`` names the setting in the error.

    >>> import tempfile
    >>> check_checkpoint_dir(tempfile.mkdtemp())  # empty: a fresh run may write there
    """
    directory = pathlib.Path(directory)
    existing = latest_checkpoint(directory) if directory.is_dir() else None
    if existing is None:
        return
    if resume is not None and (not pathlib.Path(resume).is_file()
                               or existing.resolve() == pathlib.Path(resume).resolve()):
        return
    raise ValueError(f"config key {key}: {str(directory.resolve())!r} holds checkpoints up to {existing.name}, of an "
                     f"earlier run or a later point of this one: resume the latest with checkpoint.resume="
                     f"{existing.parent.resolve()}, or give this run another {key} (or hydra.run.dir).")


def prepare_run_outputs(run_dir: str | os.PathLike, checkpoint_dir: str | os.PathLike,
                        resume: str | os.PathLike | None = None,
                        check: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any] | None:
    """What a run checks before it builds anything, so that a bad start fails in seconds and not at the first
    checkpoint an hour in. In order: loads the checkpoint to ``resume`` (a file, or a directory: its newest), refuses
    a ``checkpoint_dir`` that holds another run's checkpoints (:func:`check_checkpoint_dir`), calls ``check(saved)``
    (the caller's test that the checkpoint is this run's: it raises ``ValueError``), probes that ``run_dir`` and
    ``checkpoint_dir`` are writable, and removes what a killed write left in them (:func:`remove_temporary_files`).

    Errors name the script settings ``checkpoint.resume``, ``checkpoint.dir`` and ``hydra.run.dir`` (the library's
    own scripts; other callers read them as "the checkpoint to resume", "the checkpoint directory", "the run
    directory") and the path given. Returns the loaded checkpoint (:func:`load_checkpoint`) with its ``"path"``, or
    None for a fresh run.

    >>> import tempfile
    >>> prepare_run_outputs(tempfile.mkdtemp(), tempfile.mkdtemp() + "/checkpoints") is None  # a fresh run
    True
    """
    saved = None
    if resume is not None:
        if not pathlib.Path(resume).exists():
            raise ValueError(f"config key checkpoint.resume: no checkpoint at {str(resume)!r}.")
        try:  # tensors, plain containers and JSON only: a checkpoint cannot run code
            saved = {**load_checkpoint(resume), "path": str(resume)}
        except (CheckpointError, FileNotFoundError) as error:
            raise ValueError(f"config key checkpoint.resume: {error}") from None
    check_checkpoint_dir(checkpoint_dir, resume)
    if saved is not None and check is not None:
        try:
            check(saved)
        except ValueError as error:
            raise ValueError(f"checkpoint {saved['path']!r}: {error}") from None
    check_writable(run_dir, "the run directory (hydra.run.dir)")
    check_writable(checkpoint_dir, "config key checkpoint.dir")
    remove_temporary_files(run_dir, checkpoint_dir)
    return saved


def _is_pickle_checkpoint(path: pathlib.Path) -> bool:
    """Whether ``path`` is a :func:`torch.save` file (a zip with a ``data.pkl``, or a legacy raw pickle), looked at
    without unpickling it."""
    if not path.is_file():
        return False
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist())
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"  # a pickle's PROTO opcode


def remove_temporary_files(*directories: str | os.PathLike) -> list[pathlib.Path]:
    """Deletes what an interrupted write (a kill, a full disk) can leave in ``directories``: TorchRL's staging,
    archive, backup and delete entries of a checkpoint being written or pruned, and :func:`atomic_write_text`'s
    temporary files. Returns what it removed."""
    removed = []
    for directory in directories:
        directory = pathlib.Path(directory)
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            if path.name.startswith(".") and any(marker in path.name for marker in TEMPORARY_MARKERS):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    """Writes ``data`` to ``path`` through a temporary file in the same directory and a rename: readers see the
    old file or the new one, never a part."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode())


def check_writable(directory: str | os.PathLike, what: str) -> pathlib.Path:
    """Creates ``directory`` if needed and writes and deletes a probe file there; raises ``OSError`` naming
    ``what`` (a config key) and the directory if it cannot (a read-only file system, no space, a file in the way).
    Permission bits do not stop root, so the probe writes rather than asking ``os.access``."""
    directory = pathlib.Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(directory / ".write-probe", b"probe")
        (directory / ".write-probe").unlink()
    except OSError as error:
        raise OSError(error.errno, f"{what}: cannot write to {str(directory)!r} ({error.strerror or error}); "
                                   "choose a writable directory with free space.") from None
    return directory


__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "SafeStateDictAdapter",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_checkpoint_dir",
    "check_writable",
    "latest_checkpoint",
    "load_checkpoint",
    "prepare_run_outputs",
    "remove_temporary_files",
    "save_checkpoint",
]
