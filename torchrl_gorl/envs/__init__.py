"""Environment pieces for GoRL."""
from torchrl_gorl.envs.batched_dm_control import BatchedDMControlEnv
from torchrl_gorl.envs.dm_control import make_env, make_single_env
from torchrl_gorl.envs.playground import (  # JAX and mujoco_playground are imported only when an env is built
    make_playground_env,
    PLAYGROUND_IMPLS,
    playground_available,
)
from torchrl_gorl.envs.tasks import (
    default_gamma,
    EPISODE_LENGTH,
    PAPER_TASKS,
    PLAYGROUND_TASKS,
    resolve_playground_task,
    resolve_task,
    task_id,
)
from torchrl_gorl.envs.transforms import TanhActionTransform

__all__ = [
    "BatchedDMControlEnv",
    "EPISODE_LENGTH",
    "PAPER_TASKS",
    "PLAYGROUND_IMPLS",
    "PLAYGROUND_TASKS",
    "TanhActionTransform",
    "default_gamma",
    "make_env",
    "make_playground_env",
    "make_single_env",
    "playground_available",
    "resolve_playground_task",
    "resolve_task",
    "task_id",
]
