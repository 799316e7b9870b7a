"""Training utilities shared by the scripts: checkpoints, decoder refits, evaluation, offline datasets."""
from torchrl_gorl.training.checkpoint import (
    atomic_write_bytes,
    atomic_write_text,
    check_writable,
    latest_checkpoint,
    load_checkpoint,
    remove_temporary_files,
    SafeStateDictAdapter,
    save_checkpoint,
)
from torchrl_gorl.training.datasets import load_transitions, save_transitions, TRANSITION_KEYS
from torchrl_gorl.training.decoder_refit import refit_decoder, RefitResult
from torchrl_gorl.training.evaluation import evaluate_policy
from torchrl_gorl.training.ppo_update import clip_and_adam_, PPOUpdate

__all__ = [
    "PPOUpdate",
    "RefitResult",
    "SafeStateDictAdapter",
    "TRANSITION_KEYS",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "clip_and_adam_",
    "evaluate_policy",
    "latest_checkpoint",
    "load_checkpoint",
    "load_transitions",
    "refit_decoder",
    "remove_temporary_files",
    "save_checkpoint",
    "save_transitions",
]
