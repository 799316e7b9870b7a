"""What the decoder objectives share: keys, input checks, per-sample weights and reduction."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase, TensorDictParams
from tensordict.utils import NestedKey
from torchrl.objectives import LossModule
from torchrl.objectives.utils import _reduce

from torchrl_gorl.modules._utils import check_last_dim, check_positive
from torchrl_gorl.modules.decoder import GenerativeDecoder

_REDUCTIONS = ("mean", "sum", "none")


class GenerativeDecoderLoss(LossModule):
    """Base of the supervised decoder objectives: a per-sample generative loss on ``(observation, action)``.

    Subclasses implement :meth:`_per_sample_loss`, returning the loss of each sample averaged
    over its ``num_noise_samples`` draws of (noise, time). Everything else is shared: the
    tensordict keys, checks that fail before any compute, the optional per-sample weights
    (``set_keys(weight=...)``, used for advantage-weighted refits such as GMPO), and the reduction.

    With weights ``w``, ``reduction="mean"`` returns ``mean(w * loss)`` (not a normalised
    average), so the weights' scale sets the step size as in advantage-weighted regression.
    """

    @dataclass
    class _AcceptedKeys:
        """Configurable tensordict keys.

        Attributes:
            observation (NestedKey): the conditioning observation (raw; the decoder normalises it).
                Defaults to ``"observation"``.
            action (NestedKey): the pre-squash action to model. Defaults to ``"action"``.
            weight (NestedKey, optional): a non-negative per-sample weight of shape ``[*B]`` or
                ``[*B, 1]``. Defaults to ``None`` (unweighted).
        """

        observation: NestedKey = "observation"
        action: NestedKey = "action"
        weight: NestedKey | None = None

    default_keys = _AcceptedKeys
    decoder_network: GenerativeDecoder
    decoder_network_params: TensorDictParams
    target_decoder_network_params: TensorDictParams
    loss_name: str = "loss_decoder"

    def __init__(
        self,
        decoder_network: GenerativeDecoder,
        *,
        num_noise_samples: int = 8,
        reduction: str = "mean",
        check_finite: bool = True,
    ) -> None:
        if not isinstance(decoder_network, GenerativeDecoder):
            raise TypeError(
                f"{type(self).__name__} expects a GenerativeDecoder, got {type(decoder_network).__name__}."
            )
        check_positive(num_noise_samples=num_noise_samples)
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}.")
        self._in_keys = None
        super().__init__()
        self.convert_to_functional(decoder_network, "decoder_network")
        self.num_noise_samples = num_noise_samples
        self.reduction = reduction
        self.check_finite = check_finite

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        self._in_keys = None

    @property
    def in_keys(self) -> list[NestedKey]:
        if self._in_keys is None:
            keys = [self.tensor_keys.observation, self.tensor_keys.action]
            if self.tensor_keys.weight is not None:
                keys.append(self.tensor_keys.weight)
            self._in_keys = keys
        return self._in_keys

    @property
    def out_keys(self) -> list[str]:
        return [self.loss_name]

    def _get(self, tensordict: TensorDictBase, key: NestedKey) -> torch.Tensor:
        value = tensordict.get(key, None)
        if value is None:
            raise KeyError(f"{type(self).__name__} needs the key {key!r} in its input tensordict.")
        if self.check_finite and not torch.isfinite(value).all():
            bad = int((~torch.isfinite(value)).sum())
            raise ValueError(f"{type(self).__name__}: {key!r} holds {bad} non-finite value(s) (NaN or inf).")
        return value

    def _per_sample_loss(self, observation: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(loss [*B], mean square of the regression target [*B])``."""
        raise NotImplementedError

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        decoder = self.decoder_network
        observation = self._get(tensordict, self.tensor_keys.observation)
        action = self._get(tensordict, self.tensor_keys.action)
        check_last_dim(observation, decoder.observation_dim, f"{self.tensor_keys.observation!r}")
        check_last_dim(action, decoder.action_dim, f"{self.tensor_keys.action!r}")
        if observation.shape[:-1] != action.shape[:-1]:
            raise ValueError(
                f"observation and action batch shapes differ: {tuple(observation.shape[:-1])} vs {tuple(action.shape[:-1])}."
            )
        weight = None
        if self.tensor_keys.weight is not None:
            weight = self._get(tensordict, self.tensor_keys.weight)
            if weight.shape == (*action.shape[:-1], 1):
                weight = weight.squeeze(-1)
            if weight.shape != action.shape[:-1]:
                raise ValueError(
                    f"weight {self.tensor_keys.weight!r} must have shape {tuple(action.shape[:-1])} "
                    f"(or with a trailing 1), got {tuple(weight.shape)}."
                )
            if self.check_finite and (weight < 0).any():
                raise ValueError(f"weight {self.tensor_keys.weight!r} has negative entries.")

        with self.decoder_network_params.to_module(decoder):
            loss, target_sq = self._per_sample_loss(observation, action)
        out = {"target_mean_square": target_sq.detach().mean()}
        if weight is not None:
            weight = weight.detach()
            loss = loss * weight
            out["weight_mean"] = weight.mean()
            out["weight_max"] = weight.max()
            # fraction of the batch that effectively contributes: (sum w)^2 / (n sum w^2)
            out["weight_ess"] = weight.sum().pow(2) / (weight.numel() * weight.pow(2).sum()).clamp_min(1e-12)
        out[self.loss_name] = _reduce(loss, self.reduction)
        return TensorDict(out, batch_size=[])
