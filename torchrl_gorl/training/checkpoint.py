"""Atomic checkpoints and the random state that makes a resumed run end where an uninterrupted one does."""
from __future__ import annotations

import os
import pathlib
import random
from typing import Any

import numpy as np
import torch


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> pathlib.Path:
    """Writes ``state`` with :func:`torch.save` atomically: to a temporary file first, then renamed.

    A crash mid-write leaves the previous checkpoint at ``path`` intact.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Loads a checkpoint written by :func:`save_checkpoint`.

    It holds Python and NumPy random states, so it is unpickled in full (``weights_only=False``):
    load only checkpoints you trust.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist.")
    return torch.load(path, map_location=map_location, weights_only=False)


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA, when present) random states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what :func:`get_rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
