"""Training utilities shared by the scripts: checkpoints, decoder refits, evaluation, offline datasets."""
from torchrl_gorl.training.checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from torchrl_gorl.training.datasets import load_transitions, save_transitions, TRANSITION_KEYS
from torchrl_gorl.training.decoder_refit import refit_decoder, RefitResult
from torchrl_gorl.training.evaluation import evaluate_policy

__all__ = [
    "RefitResult",
    "TRANSITION_KEYS",
    "evaluate_policy",
    "get_rng_state",
    "load_checkpoint",
    "load_transitions",
    "refit_decoder",
    "save_checkpoint",
    "save_transitions",
    "set_rng_state",
]
