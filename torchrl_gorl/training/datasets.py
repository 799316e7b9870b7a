"""Offline datasets as TorchRL replay buffers on disk: what a GoRL run collected, reused by GMPO and GMPG."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
from collections.abc import Sequence

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer

#: what an offline transition needs: the IQL critics bootstrap from the next observation
TRANSITION_KEYS = ("observation", "action", ("next", "observation"), ("next", "reward"), ("next", "done"),
                   ("next", "terminated"))


def save_transitions(data: TensorDictBase, path: str | os.PathLike) -> pathlib.Path:
    """Saves flat transitions as a :class:`~torchrl.data.TensorDictReplayBuffer` (memory-mapped storage) at ``path``.

    The buffer is dumped into a temporary directory and renamed into place, so an existing dataset at
    ``path`` is replaced only by a complete one. Load it with :func:`load_transitions` (or with TorchRL:
    ``TensorDictReplayBuffer(storage=LazyMemmapStorage(n)).loads(path)``).

    Examples:
        >>> import tempfile, torch
        >>> from tensordict import TensorDict
        >>> data = TensorDict(observation=torch.randn(6, 3), action=torch.randn(6, 2), batch_size=[6])
        >>> path = save_transitions(data, tempfile.mkdtemp() + "/stage0")
        >>> len(load_transitions(path))
        6
    """
    path = pathlib.Path(path)
    data = data.reshape(-1) if data.batch_dims != 1 else data
    if data.shape[0] == 0:
        raise ValueError("save_transitions got an empty batch.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        # an in-memory storage: ``dumps`` writes the memory-mapped files once (a memmap storage would write twice)
        buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(data.shape[0]))
        buffer.extend(data.cpu())
        tmp.mkdir()
        buffer.dumps(tmp / "buffer")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return path


def load_transitions(
    paths: str | os.PathLike | Sequence[str | os.PathLike], *, batch_size: int | None = None,
    required_keys: Sequence = (), device: torch.device | str | None = None,
) -> TensorDictReplayBuffer:
    """Loads one or several datasets written by :func:`save_transitions` into one in-memory replay buffer.

    Raises a ``ValueError`` naming the path when a dataset is missing or lacks one of ``required_keys``.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("load_transitions needs at least one dataset path.")
    parts = []
    for p in paths:
        p = pathlib.Path(p)
        meta = p / "buffer" / "storage" / "storage_metadata.json"
        if not meta.is_file():
            raise ValueError(f"no dataset at {str(p)!r} (expected a replay buffer written by save_transitions).")
        size = json.loads(meta.read_text())["len"]
        # the storage's memory-mapped tensors alone, never TorchRL's ``loads`` (it unpickles the buffer's
        # prefetch.pkl) nor a pickled field: a dataset someone sent cannot run code
        try:
            storage = TensorDict.load_memmap(p / "buffer" / "storage", allow_pickle=False)
        except Exception as error:
            raise ValueError(f"dataset {str(p)!r} cannot be read as tensors ({type(error).__name__}: {error}).") from None
        data = storage[:size].exclude("index")  # the buffer's own bookkeeping
        missing = [key for key in required_keys if key not in data.keys(include_nested=True)]
        if missing:
            raise ValueError(f"dataset {str(p)!r} lacks the keys {missing}; it has {sorted(map(str, data.keys(True, True)))}.")
        parts.append(data.clone())
    data = torch.cat(parts) if len(parts) > 1 else parts[0]
    storage_device = device if device is not None else "cpu"
    out = TensorDictReplayBuffer(storage=LazyTensorStorage(data.shape[0], device=storage_device), batch_size=batch_size)
    out.extend(data)
    return out
