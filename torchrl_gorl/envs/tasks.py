"""Task names and per-task facts: the one place the env modules take them from.

Plain tables and functions: this module imports none of GoRL's env modules, no torch, no JAX and no
``mujoco_playground`` (only :func:`dm_control_tasks` imports ``dm_control.suite``, when called), so
:mod:`~torchrl_gorl.envs.dm_control`, :mod:`~torchrl_gorl.envs.batched_dm_control` and
:mod:`~torchrl_gorl.envs.playground` all import from it and never from each other for names.

Examples:
    >>> resolve_task("CheetahRun"), task_id("cheetah_run"), resolve_playground_task("ball_in_cup-catch")
    (('cheetah', 'run'), 'cheetah-run', 'BallInCup')
    >>> default_gamma("FingerSpin"), default_gamma("walker-walk")
    (0.95, 0.995)
"""
from __future__ import annotations

import re

__all__ = [
    "EPISODE_LENGTH",
    "PAPER_TASKS",
    "PLAYGROUND_TASKS",
    "default_gamma",
    "dm_control_tasks",
    "resolve_playground_task",
    "resolve_task",
    "split_task_name",
    "task_id",
]

#: Every dm_control-suite env of ``playground==0.2.0`` and its dm_control ``(domain, task)``.
PLAYGROUND_TASKS: dict[str, tuple[str, str]] = {
    "AcrobotSwingup": ("acrobot", "swingup"),
    "AcrobotSwingupSparse": ("acrobot", "swingup_sparse"),
    "BallInCup": ("ball_in_cup", "catch"),
    "CartpoleBalance": ("cartpole", "balance"),
    "CartpoleBalanceSparse": ("cartpole", "balance_sparse"),
    "CartpoleSwingup": ("cartpole", "swingup"),
    "CartpoleSwingupSparse": ("cartpole", "swingup_sparse"),
    "CheetahRun": ("cheetah", "run"),
    "FingerSpin": ("finger", "spin"),
    "FingerTurnEasy": ("finger", "turn_easy"),
    "FingerTurnHard": ("finger", "turn_hard"),
    "FishSwim": ("fish", "swim"),
    "HopperHop": ("hopper", "hop"),
    "HopperStand": ("hopper", "stand"),
    "HumanoidRun": ("humanoid", "run"),
    "HumanoidStand": ("humanoid", "stand"),
    "HumanoidWalk": ("humanoid", "walk"),
    "PendulumSwingup": ("pendulum", "swingup"),
    "PointMass": ("point_mass", "easy"),
    "ReacherEasy": ("reacher", "easy"),
    "ReacherHard": ("reacher", "hard"),
    "SwimmerSwimmer6": ("swimmer", "swimmer6"),
    "WalkerRun": ("walker", "run"),
    "WalkerStand": ("walker", "stand"),
    "WalkerWalk": ("walker", "walk"),
}

#: The paper's tasks (MuJoCo Playground names) and their dm_control ``(domain, task)``: a subset of
#: :data:`PLAYGROUND_TASKS`.
PAPER_TASKS: dict[str, tuple[str, str]] = {
    name: PLAYGROUND_TASKS[name]
    for name in ("CheetahRun", "FingerSpin", "FingerTurnHard", "FishSwim", "HopperStand", "WalkerWalk", "BallInCup")
}

_BY_DM_CONTROL = {pair: name for name, pair in PLAYGROUND_TASKS.items()}

#: Discount of the reference's encoder PPO (Brax config): 0.95 for these tasks, 0.995 otherwise.
_LOW_GAMMA_TASKS = {("finger", "spin"), ("ball_in_cup", "catch")}

#: Every dm_control episode of these tasks lasts 1000 control steps.
EPISODE_LENGTH = 1000


def dm_control_tasks() -> set[tuple[str, str]]:
    """Every ``(domain, task)`` of the installed dm_control suite (imports ``dm_control.suite``)."""
    from dm_control import suite

    return set(suite.ALL_TASKS)


def split_task_name(name: str, known: set[tuple[str, str]]) -> tuple[str, str] | None:
    """The ``(domain, task)`` of ``known`` that ``"cheetah-run"``, ``"cheetah/run"``, ``"cheetah:run"`` or
    ``"ball_in_cup_catch"`` (every split on underscores is tried) names, or ``None``."""
    for sep in ("-", "/", ":"):
        domain, found, task = name.partition(sep)
        if found and (domain, task) in known:
            return domain, task
    for match in re.finditer("_", name):
        pair = (name[: match.start()], name[match.end() :])
        if pair in known:
            return pair
    return None


def resolve_task(name: str) -> tuple[str, str]:
    """Maps ``"cheetah-run"``, ``"cheetah_run"``, ``"cheetah/run"`` or the paper's ``"CheetahRun"`` (any MuJoCo
    Playground dm_control-suite name, e.g. ``"PointMass"``) to ``("cheetah", "run")``.

    Raises a ``ValueError`` naming the task and listing the accepted names if it is unknown.
    """
    if not isinstance(name, str):
        raise ValueError(f"task must be a string, got {name!r}.")
    if name in PAPER_TASKS:
        return PAPER_TASKS[name]
    if name in PLAYGROUND_TASKS:
        return PLAYGROUND_TASKS[name]
    known = dm_control_tasks()
    pair = split_task_name(name, known)
    if pair is not None:
        return pair
    accepted = sorted(PAPER_TASKS) + sorted(f"{d}-{t}" for d, t in known)
    raise ValueError(f"unknown task {name!r}; accepted names: {', '.join(accepted)}.")


def task_id(name: str) -> str:
    """Canonical ``"domain-task"`` name."""
    return "-".join(resolve_task(name))


def default_gamma(name: str) -> float:
    """The reference's discount for this task (0.95 for finger-spin and ball_in_cup-catch, else 0.995)."""
    return 0.95 if resolve_task(name) in _LOW_GAMMA_TASKS else 0.995


def resolve_playground_task(name: str) -> str:
    """Maps a Playground name (``"CheetahRun"``) or a dm_control name (``"cheetah-run"``, ``"cheetah_run"``,
    ``"cheetah/run"``, ``"ball_in_cup-catch"``) to the Playground dm_control-suite env name.

    Raises a ``ValueError`` naming the task and listing the accepted names if Playground has no port of it.
    """
    if not isinstance(name, str):
        raise ValueError(f"task must be a string, got {name!r}.")
    if name in PLAYGROUND_TASKS:
        return name
    pair = split_task_name(name, set(_BY_DM_CONTROL))
    if pair is not None:
        return _BY_DM_CONTROL[pair]
    accepted = sorted(PLAYGROUND_TASKS) + sorted(f"{d}-{t}" for d, t in _BY_DM_CONTROL)
    raise ValueError(
        f"unknown MuJoCo Playground task {name!r} (only Playground's dm_control-suite ports are supported); "
        f"accepted names: {', '.join(accepted)}."
    )
