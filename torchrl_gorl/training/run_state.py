"""Where a training run stands: env-step counters, stage and iteration, the evaluation history, and the stage's best
encoder; what a checkpoint must hold to continue the run exactly."""
from __future__ import annotations

import copy
from typing import Any

import torch

__all__ = ["RunState"]

#: the kinds of env steps a run counts: encoder PPO, decoder data (both training) and evaluation (apart)
FRAME_KINDS = ("encoder", "decoder_data", "eval")


class RunState:
    """Progress of a GoRL run (or a one-stage baseline) and the stage's best encoder.

    Every env step is counted by kind (:data:`FRAME_KINDS`); :attr:`total_frames` is encoder PPO plus decoder data,
    the x-axis of the learning curves. The encoder an evaluation scores highest in the current stage is kept
    (:meth:`record_eval`; ties go to the later one), since the reference trains on from the stage's best encoder.
    :meth:`state_dict` holds the progress as plain JSON-able values and the best encoder's and last decoder's state
    dicts as tensors.

    Examples:
        >>> import torch
        >>> actor, critic = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
        >>> state = RunState()
        >>> state.add_frames("encoder", 1000)
        >>> state.record_eval({"return_mean": 5.0}, actor, critic)
        True
        >>> state.record_eval({"return_mean": 3.0}, actor, critic)
        False
        >>> state.best_return, state.total_frames
        (5.0, 1000)
        >>> state.end_stage(num_stages=2)
        >>> state.stage, state.iteration, state.stage_starts
        (1, 0, [0, 1000])
    """

    def __init__(self) -> None:
        self.progress: dict[str, Any] = {
            "stage": 0, "iteration": 0, "frames_encoder": 0, "frames_decoder_data": 0, "frames_eval": 0,
            "best_return": -float("inf"), "eval_rows": [], "stage_starts": [0], "refits": [],
            "wall_time": 0.0, "wall_time_eval": 0.0}
        self.best_encoder: dict[str, Any] | None = None  # the stage's best actor and critic state dicts
        self.last_decoder: dict[str, Any] | None = None  # a refit after the last stage: kept, never deployed

    # -- counters
    @property
    def stage(self) -> int:
        return self.progress["stage"]

    @property
    def iteration(self) -> int:
        """The next PPO iteration of the stage (0: the stage has not started)."""
        return self.progress["iteration"]

    @iteration.setter
    def iteration(self, value: int) -> None:
        self.progress["iteration"] = value

    @property
    def total_frames(self) -> int:
        """Training env steps: encoder PPO plus decoder data (evaluation not included)."""
        return self.progress["frames_encoder"] + self.progress["frames_decoder_data"]

    @property
    def eval_rows(self) -> list[dict[str, float]]:
        return self.progress["eval_rows"]

    @property
    def stage_starts(self) -> list[int]:
        return self.progress["stage_starts"]

    @property
    def best_return(self) -> float:
        return self.progress["best_return"]

    @property
    def target_reached(self) -> bool:
        """An evaluation reached the run's target return (:meth:`record_eval`): the run ends there."""
        return self.progress.get("target_reached", False)

    def add_frames(self, kind: str, n: int) -> None:
        if kind not in FRAME_KINDS:
            raise ValueError(f"kind must be one of {list(FRAME_KINDS)}, got {kind!r}.")
        self.progress[f"frames_{kind}"] += n

    # -- stages and evaluations
    def start_stage(self) -> None:
        """A fresh stage: no best encoder yet."""
        self.progress["best_return"], self.best_encoder = -float("inf"), None

    def record_eval(self, row: dict[str, float], actor: torch.nn.Module, critic: torch.nn.Module,
                    target_return: float | None = None) -> bool:
        """Appends an evaluation row (``return_mean`` and anything else) to the history; keeps the encoder if it is
        the stage's best (ties: the later one) and returns whether it did. A ``target_return`` reached marks the run
        as done (:attr:`target_reached`)."""
        self.eval_rows.append(row)
        value = row["return_mean"]
        if target_return is not None and value >= target_return:
            self.progress["target_reached"] = True
        if not value >= self.best_return - 1e-6:  # (NaN: not kept)
            return False
        self.progress["best_return"] = value
        self.best_encoder = copy.deepcopy({"actor": actor.state_dict(), "critic": critic.state_dict()})
        return True

    def load_best_encoder(self, actor: torch.nn.Module, critic: torch.nn.Module) -> None:
        """Loads the stage's best encoder into ``actor`` and ``critic``."""
        if self.best_encoder is None:
            raise RuntimeError("no evaluation in this stage yet: there is no best encoder to load.")
        actor.load_state_dict(self.best_encoder["actor"])
        critic.load_state_dict(self.best_encoder["critic"])

    def end_stage(self, num_stages: int) -> None:
        """The next stage starts at iteration 0 and, if there is one, at the current env-step count."""
        self.progress["stage"], self.progress["iteration"] = self.stage + 1, 0
        if self.stage < num_stages:
            self.stage_starts.append(self.total_frames)

    # -- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """``progress`` (plain values) and, where set, ``best_encoder`` and ``last_decoder`` (tensors)."""
        state = {"progress": self.progress}
        state.update({key: value for key, value in (("best_encoder", self.best_encoder),
                                                     ("last_decoder", self.last_decoder)) if value is not None})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = sorted({"stage", "iteration", *(f"frames_{kind}" for kind in FRAME_KINDS), "eval_rows"}
                         - set(state["progress"]))
        if missing:
            raise ValueError(f"run state: progress lacks {missing}.")
        self.progress = state["progress"]
        self.best_encoder, self.last_decoder = state.get("best_encoder"), state.get("last_decoder")
