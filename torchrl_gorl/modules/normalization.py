"""Observation normalisation with statistics stored as module buffers."""
from __future__ import annotations

import torch
from torch import nn

from torchrl_gorl.modules._utils import check_last_dim, check_positive


class ObservationNormalizer(nn.Module):
    """Standardises observations, ``(obs - loc) / scale``, with statistics kept as buffers.

    The statistics live in the module (and therefore in its ``state_dict``) rather than in an
    env transform, because GoRL needs them in two places that must never disagree: the
    decoder normalises with statistics frozen at refit time, and the decoder dataset stores raw
    observations. :meth:`update` merges a batch into running moments (Chan et al.'s parallel
    update, accumulated in float64), so calling it once on a whole dataset gives the exact
    population mean and standard deviation.

    Unlike the reference's running normaliser, the second moment is merged correctly; the
    reference forgets it and its std shrinks like ``1/sqrt(k)`` (gorl-reference.md §2.3).

    Args:
        observation_dim (int): size of the observation (last) dimension.

    Keyword Args:
        min_scale (float): lower bound on ``scale``, so constant features do not divide by 0.
            Defaults to ``1e-6``.

    Examples:
        >>> import torch
        >>> norm = ObservationNormalizer(3)
        >>> norm.update(torch.randn(1000, 3) * 2 + 1)
        >>> norm(torch.ones(3)).abs().max() < 0.2
        tensor(True)
    """

    loc: torch.Tensor
    scale: torch.Tensor
    count: torch.Tensor

    def __init__(self, observation_dim: int, *, min_scale: float = 1e-6) -> None:
        super().__init__()
        check_positive(observation_dim=observation_dim)
        if not min_scale > 0:
            raise ValueError(f"min_scale must be > 0, got {min_scale!r}.")
        self.observation_dim = observation_dim
        self.min_scale = min_scale
        self.register_buffer("loc", torch.zeros(observation_dim))
        self.register_buffer("scale", torch.ones(observation_dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))
        self.register_buffer("_mean", torch.zeros(observation_dim, dtype=torch.float64))
        self.register_buffer("_m2", torch.zeros(observation_dim, dtype=torch.float64))

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        check_last_dim(observation, self.observation_dim, "observation")
        return (observation - self.loc) / self.scale

    @torch.no_grad()
    def update(self, observation: torch.Tensor) -> None:
        """Merges a batch of observations (any leading shape) into the statistics, in place."""
        check_last_dim(observation, self.observation_dim, "observation")
        batch = observation.reshape(-1, self.observation_dim).to(self._mean.dtype)
        if not torch.isfinite(batch).all():
            raise ValueError("ObservationNormalizer.update received non-finite observations.")
        n_b = batch.shape[0]
        if n_b == 0:
            return
        mean_b = batch.mean(0)
        m2_b = ((batch - mean_b) ** 2).sum(0)
        n_a = self.count.to(self._mean.dtype)
        n = n_a + n_b
        delta = mean_b - self._mean
        self._mean.add_(delta * (n_b / n))
        self._m2.add_(m2_b + delta.pow(2) * (n_a * n_b / n))
        self.count.add_(n_b)
        # in-place writes keep storage shared with functional copies (TensorDictParams)
        self.loc.copy_(self._mean)
        self.scale.copy_((self._m2 / n).sqrt().clamp_min(self.min_scale))

    def _apply(self, fn, recurse=True):
        # a dtype cast (.float(), .half(), .double()) must not round the running moments
        mean, m2 = self._mean, self._m2
        super()._apply(fn, recurse)
        device = self._mean.device
        if self._mean.dtype != torch.float64 and device.type != "mps":
            self._mean = mean.to(device=device, dtype=torch.float64)
            self._m2 = m2.to(device=device, dtype=torch.float64)
        return self

    def reset_parameters(self) -> None:
        """Same as :meth:`reset` (the name ``reset_parameters_recursive`` looks for)."""
        self.reset()

    @torch.no_grad()
    def reset(self) -> None:
        """Back to ``loc = 0``, ``scale = 1`` and an empty count."""
        self.loc.zero_()
        self.scale.fill_(1.0)
        self.count.zero_()
        self._mean.zero_()
        self._m2.zero_()

    def extra_repr(self) -> str:
        return f"observation_dim={self.observation_dim}"
