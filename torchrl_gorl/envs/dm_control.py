"""The dm_control env factory the GoRL scripts use (task names: :mod:`torchrl_gorl.envs.tasks`)."""
from __future__ import annotations

import functools
import logging
import os

from torchrl.envs import (
    CatTensors,
    Compose,
    DMControlEnv,
    DoubleToFloat,
    EnvBase,
    EnvCreator,
    InitTracker,
    ParallelEnv,
    RewardSum,
    SerialEnv,
    StepCounter,
    TransformedEnv,
)

from torchrl_gorl.envs.batched_dm_control import BatchedDMControlEnv
from torchrl_gorl.envs.tasks import resolve_task
from torchrl_gorl.envs.transforms import TanhActionTransform

# dm_control picks an OpenGL backend when it is first imported; without a display its GLFW probe warns
# ("The DISPLAY environment variable is missing"). Nothing here renders, so with no display and no choice
# of the user's (MUJOCO_GL), rendering is switched off. Set MUJOCO_GL=egl (or osmesa) to render headless.
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "disable"


class _DropMJCFDeprecations(logging.Filter):
    """dm_control's own task XMLs use a MuJoCo attribute (``settotalmass``) that MuJoCo 3.17 deprecates: the
    warning comes once per env built (hundreds with batched envs), in every worker, and is not the user's to fix."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is deprecated and will be removed" not in record.getMessage()


logging.getLogger("absl").addFilter(_DropMJCFDeprecations())

def make_single_env(name: str) -> TransformedEnv:
    """One dm_control env with a flat float32 ``"observation"`` and a ``tanh`` squash on the action.

    The observation dict is concatenated in sorted key order (TorchRL's ``CatTensors``
    default). The env's time limit (1000 steps) ends episodes with ``truncated=True`` and
    ``terminated=False``, so value bootstrapping continues through it.
    """
    domain, task = resolve_task(name)
    base = DMControlEnv(domain, task, from_pixels=False, pixels_only=False)
    return TransformedEnv(
        base,
        Compose(
            CatTensors(sorted(base.observation_spec.keys()), "observation"),
            DoubleToFloat(),
            TanhActionTransform(),
        ),
    )


BACKENDS = ("batched", "serial", "parallel")


def make_env(name: str, num_envs: int = 1, *, backend: str = "batched", seed: int | None = None) -> EnvBase:
    """``num_envs`` dm_control envs as one batched TorchRL env with a flat ``"observation"``, the ``tanh``
    squash on the action, and ``InitTracker``, ``StepCounter`` and ``RewardSum``.

    Args:
        name (str): task name, see :func:`resolve_task`.
        num_envs (int): batch size.

    Keyword Args:
        backend (str): ``"batched"`` (default): one :class:`BatchedDMControlEnv` stepping all envs in
            this process, the fast path; ``"serial"`` / ``"parallel"``: TorchRL's standard
            ``SerialEnv`` / ``ParallelEnv`` of :func:`make_single_env`. All give the same values.
        seed (int, optional): seed of the first env.
    """
    resolve_task(name)  # fail here, with a clear message, rather than in a worker
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}.")
    if backend == "batched":
        return TransformedEnv(
            BatchedDMControlEnv(name, num_envs, seed=seed),
            Compose(TanhActionTransform(), InitTracker(), StepCounter(), RewardSum()),
        )
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    batched_cls = ParallelEnv if backend == "parallel" else SerialEnv
    env = batched_cls(num_envs, EnvCreator(functools.partial(make_single_env, name)), serial_for_single=True)
    env = TransformedEnv(env, Compose(InitTracker(), StepCounter(), RewardSum()))
    if seed is not None:
        env.set_seed(seed)
    return env
