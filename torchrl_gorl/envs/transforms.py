"""The squash from the decoder's unbounded action to the env's [-1, 1] box."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict.utils import NestedKey
from torchrl.data import Bounded, Composite, TensorSpec, Unbounded
from torchrl.envs.transforms import Transform


class TanhActionTransform(Transform):
    """Applies ``tanh`` to the policy's action on its way into the env (inverse direction only).

    GoRL decoders output an unbounded, pre-squash action ``a``; the env receives ``tanh(a)``.
    Putting the squash on the env rather than in the policy means the rollout keeps the
    pre-squash ``a`` under ``"action"``, which is exactly what the decoder is refit on. The
    outer env's action spec becomes :class:`~torchrl.data.Unbounded`.

    The wrapped env's action must be bounded to ``[-1, 1]`` (all dm_control tasks are); for
    other bounds, put TorchRL's :class:`~torchrl.envs.transforms.ActionScaling` before this
    transform.

    Args:
        in_keys_inv (sequence of NestedKey): action keys to squash. Defaults to ``["action"]``.

    Examples:
        >>> from torchrl.envs import DMControlEnv, TransformedEnv
        >>> env = TransformedEnv(DMControlEnv("cheetah", "run"), TanhActionTransform())
        >>> type(env.action_spec).__name__
        'UnboundedContinuous'
    """

    def __init__(self, in_keys_inv: Sequence[NestedKey] | None = None) -> None:
        in_keys_inv = ["action"] if in_keys_inv is None else list(in_keys_inv)
        super().__init__(in_keys=[], out_keys=[], in_keys_inv=in_keys_inv, out_keys_inv=in_keys_inv)

    def _inv_apply_transform(self, action: torch.Tensor) -> torch.Tensor:
        return action.tanh()

    def _check_unit_box(self, key: NestedKey, spec: TensorSpec) -> None:
        box = getattr(spec, "space", None)
        if not isinstance(spec, Bounded) or not (
            torch.all(box.low == -1) and torch.all(box.high == 1)
        ):
            raise ValueError(
                f"TanhActionTransform squashes to [-1, 1], but the env's {key!r} spec is {spec}. "
                "Rescale it first with torchrl.envs.transforms.ActionScaling."
            )

    def transform_action_spec(self, action_spec: TensorSpec) -> TensorSpec:
        if not isinstance(action_spec, Composite):
            self._check_unit_box(self.in_keys_inv[0], action_spec)
            return Unbounded(shape=action_spec.shape, device=action_spec.device, dtype=action_spec.dtype)
        action_spec = action_spec.clone()
        for key in self.in_keys_inv:
            leaf = action_spec[key]
            self._check_unit_box(key, leaf)
            action_spec[key] = Unbounded(shape=leaf.shape, device=leaf.device, dtype=leaf.dtype)
        return action_spec
