"""The training machinery: the PPO update, the stage schedule, the run's state and outputs, checkpoints, decoder
refits, evaluation, offline datasets."""
from torchrl_gorl.training.checkpoint import (
    atomic_write_bytes,
    atomic_write_text,
    check_checkpoint_dir,
    check_writable,
    latest_checkpoint,
    load_checkpoint,
    prepare_run_outputs,
    remove_temporary_files,
    SafeStateDictAdapter,
    save_checkpoint,
)
from torchrl_gorl.training.datasets import load_transitions, save_transitions, TRANSITION_KEYS
from torchrl_gorl.training.decoder_refit import decoder_rows, refit_decoder, RefitResult
from torchrl_gorl.training.evaluation import evaluate_policy
from torchrl_gorl.training.interrupt import StopRequest
from torchrl_gorl.training.ppo_update import clip_and_adam_, PPOUpdate
from torchrl_gorl.training.run import TrainingRun
from torchrl_gorl.training.run_logger import plot_learning_curve, RunLogger
from torchrl_gorl.training.run_state import RunState
from torchrl_gorl.training.schedule import batch_seed, eval_points, StageSchedule, stage_value

__all__ = [
    "PPOUpdate",
    "RefitResult",
    "RunLogger",
    "RunState",
    "SafeStateDictAdapter",
    "StageSchedule",
    "StopRequest",
    "TRANSITION_KEYS",
    "TrainingRun",
    "atomic_write_bytes",
    "batch_seed",
    "eval_points",
    "plot_learning_curve",
    "stage_value",
    "atomic_write_text",
    "check_checkpoint_dir",
    "check_writable",
    "clip_and_adam_",
    "decoder_rows",
    "evaluate_policy",
    "latest_checkpoint",
    "load_checkpoint",
    "load_transitions",
    "prepare_run_outputs",
    "refit_decoder",
    "remove_temporary_files",
    "save_checkpoint",
    "save_transitions",
]
