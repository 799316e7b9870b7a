"""Environment pieces for GoRL."""
from torchrl_gorl.envs.batched_dm_control import BatchedDMControlEnv
from torchrl_gorl.envs.dm_control import (
    default_gamma,
    EPISODE_LENGTH,
    make_env,
    make_single_env,
    PAPER_TASKS,
    resolve_task,
    task_id,
)
from torchrl_gorl.envs.transforms import TanhActionTransform

__all__ = [
    "BatchedDMControlEnv",
    "EPISODE_LENGTH",
    "PAPER_TASKS",
    "TanhActionTransform",
    "default_gamma",
    "make_env",
    "make_single_env",
    "resolve_task",
    "task_id",
]
