"""A run's outputs as it goes: TorchRL's logger for every metric, and the small files the result tables read
(``eval.csv``, ``learning_curve.png``, ``summary.json``), written so that a killed run loses no finished row."""
from __future__ import annotations

import csv
import io
import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from torchrl.record.loggers import generate_exp_name, get_logger

from torchrl_gorl.training.checkpoint import atomic_write_bytes, atomic_write_text

__all__ = ["RunLogger", "plot_learning_curve"]


class RunLogger:
    """TorchRL logger (``"csv"``, ``"wandb"``, ``"tensorboard"``; ``None``: none) plus the run's ``eval.csv``.

    ``eval.csv`` grows as the run goes: each evaluation row is appended (and synced) when it is made, so a killed
    run loses no finished row; a resumed run first rewrites the file with the rows its checkpoint holds
    (:meth:`restart`; the rows after it are made again, identically) and appends from there, so the file never
    holds a row twice.

    Args:
        backend: TorchRL logger backend, or ``None`` for ``eval.csv`` alone.
        algo, exp_name: the experiment's name is ``generate_exp_name(algo, exp_name)`` (TorchRL's: a date and a
            unique suffix added).
        out: the run directory (default: the working directory, hydra's run directory in the scripts).
        wandb_kwargs: passed to the wandb logger.

    Examples:
        >>> import pathlib, tempfile
        >>> out = pathlib.Path(tempfile.mkdtemp())
        >>> logger = RunLogger(None, "GoRL", "cheetah-run", out=out)
        >>> logger.log_eval({"stage": 0, "iteration": 0, "frames_total": 0, "return_mean": 1.5})
        >>> (out / "eval.csv").read_text().splitlines()[1].split(",")[:2]
        ['0', '0']
    """

    EVAL_FIELDS = ["stage", "iteration", "frames_encoder", "frames_decoder_data", "frames_total", "frames_eval",
                   "wall_time_train_s", "wall_time_eval_s",
                   "return_mean", "return_std", "return_min", "return_max", "num_episodes"]

    def __init__(self, backend: str | None, algo: str, exp_name: str, *, out: str | pathlib.Path | None = None,
                 wandb_kwargs: dict[str, Any] | None = None) -> None:
        self.exp_name = generate_exp_name(algo, exp_name)
        self.logger = None
        if backend:
            kwargs = {"wandb_kwargs": wandb_kwargs} if backend == "wandb" and wandb_kwargs else {}
            self.logger = get_logger(backend, logger_name="logs", experiment_name=self.exp_name, **kwargs)
        self.out = pathlib.Path.cwd() if out is None else pathlib.Path(out)
        self.started = False  # eval.csv is (re)written at the first row or at a successful resume, not before

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.logger is not None:
            self.logger.log_metrics(metrics, step)

    def restart(self, rows: Sequence[dict[str, float]] = ()) -> None:
        """``eval.csv`` as ``rows`` (a fresh run: the header alone), written atomically; later rows are appended."""
        self.started = True
        lines = io.StringIO()
        writer = csv.DictWriter(lines, fieldnames=self.EVAL_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.out / "eval.csv", lines.getvalue())

    def log_eval(self, row: dict[str, float]) -> None:
        """Appends ``row`` to ``eval.csv`` (created at the first row of a fresh run) and logs its returns."""
        if not self.started:
            self.restart()
        with open(self.out / "eval.csv", "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.EVAL_FIELDS, extrasaction="ignore").writerow(row)
            f.flush()
            os.fsync(f.fileno())
        self.log({f"eval/{k}": row[k] for k in ("return_mean", "return_std", "return_min", "return_max") if k in row},
                 row.get("frames_total", 0))

    def plot(self, rows: Sequence[dict[str, float]], title: str, stage_starts: Sequence[int] = ()) -> None:
        """Redraws ``learning_curve.png`` from the evaluation ``rows`` so far."""
        plot_learning_curve(rows, self.out / "learning_curve.png", title, stage_starts)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=2))


def plot_learning_curve(rows: Sequence[dict[str, float]], path: str | pathlib.Path, title: str,
                        stage_starts: Sequence[int] = ()) -> None:
    """Evaluation return (mean, ± std band) against training env steps, stage starts dotted; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if rows:
        x = np.array([r["frames_total"] for r in rows])
        y = np.array([r["return_mean"] for r in rows])
        s = np.array([r.get("return_std", 0.0) for r in rows])
        ax.plot(x, y, marker="o", ms=3)
        ax.fill_between(x, y - s, y + s, alpha=0.25)
    for start in stage_starts:
        ax.axvline(start, color="grey", ls=":", lw=1)
    ax.set_xlabel("env steps (encoder PPO + decoder data)")
    ax.set_ylabel("eval return (deterministic, 1000 steps)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(pathlib.Path(path), image.getvalue())
