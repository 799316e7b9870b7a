"""Environment pieces for GoRL."""
from torchrl_gorl.envs.transforms import TanhActionTransform

__all__ = ["TanhActionTransform"]
