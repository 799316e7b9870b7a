"""Training utilities shared by the GoRL scripts: checkpoints, decoder refits, evaluation."""
from torchrl_gorl.training.checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from torchrl_gorl.training.decoder_refit import refit_decoder, RefitResult
from torchrl_gorl.training.evaluation import evaluate_policy

__all__ = [
    "RefitResult",
    "evaluate_policy",
    "get_rng_state",
    "load_checkpoint",
    "refit_decoder",
    "save_checkpoint",
    "set_rng_state",
]
