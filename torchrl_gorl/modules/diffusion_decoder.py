"""Diffusion decoder: deterministic DDIM from the latent, with an exact identity at initialisation."""
from __future__ import annotations

import math

import torch

from torchrl_gorl.modules._utils import check_positive
from torchrl_gorl.modules.decoder import GenerativeDecoder


def cosine_alpha_bar(num_diffusion_steps: int, s: float = 0.008) -> torch.Tensor:
    """Improved-DDPM cosine schedule ``abar_k = f(k / T) / f(0)``, ``f(u) = cos^2((u + s) / (1 + s) * pi / 2)``.

    Returns ``T`` values for ``k = 0 .. T-1`` (float64); ``abar_0 = 1``.
    """
    u = torch.arange(num_diffusion_steps, dtype=torch.float64) / num_diffusion_steps
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return f / f[0]


class DiffusionDecoderModule(GenerativeDecoder):
    """GoRL's diffusion decoder ``a = g_phi(s, z)``: epsilon prediction, cosine schedule, deterministic DDIM.

    The latent plays ``x_{T-1}``; DDIM (eta = 0) then takes ``T - 1`` steps ``t -> t - 1`` down to
    ``x_0 = a``. One DDIM step is ``x_{t-1} = r_t x_t + c_t eps_hat`` with
    ``r_t = sqrt(abar_{t-1} / abar_t)`` and ``c_t = sqrt(1 - abar_{t-1}) - r_t sqrt(1 - abar_t)``.

    **Exact identity.** The noise prediction is parametrised with a closed-form skip term,
    ``eps_hat(s, x_t, t) = k_t x_t + f_phi(s, x_t, t)`` with ``k_t = (1 - r_t) / c_t``: the value of
    ``eps_hat`` for which a DDIM step leaves ``x`` unchanged. A step then reads
    ``x_{t-1} = x_t + c_t f_phi``, and a zero ``f_phi`` (:meth:`identity`) maps the latent to
    itself bit for bit. The model is still a plain epsilon predictor, trained on the usual
    ``||eps_hat - eps||^2`` (:class:`~torchrl_gorl.objectives.DiffusionLoss`); only its
    initialisation and inductive bias change. The reference's zero-weight "identity" has no
    skip term and returns ``z / sqrt(abar_9) = 1.052 z`` (under its linear schedule).

    Args:
        observation_dim (int): observation size.
        action_dim (int): action size, also the latent size.

    Keyword Args:
        num_diffusion_steps (int): ``T``, the number of noise levels (``T - 1`` sampler
            steps, each one network call). Defaults to 10. Must be at least 2.
        num_cells, activation_class, num_frequencies, observation_key, latent_key, action_key,
            device: as in :class:`FlowDecoderModule`.

    Examples:
        >>> import torch
        >>> decoder = DiffusionDecoderModule.identity(observation_dim=17, action_dim=6)
        >>> z = torch.randn(5, 6)
        >>> bool((decoder.decode(torch.randn(5, 17), z) == z).all())
        True
    """

    alpha_bar: torch.Tensor
    step_coef: torch.Tensor
    skip_coef: torch.Tensor

    def __init__(self, observation_dim: int, action_dim: int, *, num_diffusion_steps: int = 10, **kwargs) -> None:
        check_positive(num_diffusion_steps=num_diffusion_steps)
        if num_diffusion_steps < 2:
            raise ValueError(f"num_diffusion_steps must be at least 2, got {num_diffusion_steps}.")
        super().__init__(observation_dim, action_dim, **kwargs)
        self.num_diffusion_steps = num_diffusion_steps
        self._register_schedule(self.observation_norm.loc.dtype, self.observation_norm.loc.device)

    def _register_schedule(self, dtype: torch.dtype, device: torch.device) -> None:
        """Schedule buffers, computed in float64 and cast once, so a ``.double()`` decoder is exact too.

        They derive from ``num_diffusion_steps`` and are not saved in the ``state_dict``.
        """
        alpha_bar = cosine_alpha_bar(self.num_diffusion_steps)
        ratio = (alpha_bar[:-1] / alpha_bar[1:]).sqrt()  # r_t for t = 1 .. T-1
        step = (1 - alpha_bar[:-1]).sqrt() - ratio * (1 - alpha_bar[1:]).sqrt()  # c_t
        zero = torch.zeros(1, dtype=torch.float64)  # t = 0 is never the start of a step
        for name, value in (
            ("alpha_bar", alpha_bar),
            ("step_coef", torch.cat([zero, step])),
            ("skip_coef", torch.cat([zero, (1 - ratio) / step])),
        ):
            self.register_buffer(name, value.to(device=device, dtype=dtype), persistent=False)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        weight = self.network.input_layer.weight
        if weight.dtype.is_floating_point:  # recomputed rather than cast, which would round
            self._register_schedule(weight.dtype, weight.device)
        return self

    def sampler_config(self) -> dict[str, int]:
        return {"num_diffusion_steps": self.num_diffusion_steps}

    def predict_noise(self, observation: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``eps_hat(s, x_t, t)`` for a raw observation; ``t`` is an integer tensor in ``[1, T - 1]``
        with a trailing singleton dimension."""
        time = t.to(x.dtype) / self.num_diffusion_steps
        return self.skip_coef[t] * x + self.network(self.observation_norm(observation), x, time)

    def _sample(self, observation: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        condition = self.network.condition(observation)
        steps = range(self.num_diffusion_steps - 1, 0, -1)
        t = torch.arange(self.num_diffusion_steps - 1, 0, -1, device=latent.device, dtype=latent.dtype)
        time_features = self.network.time_features((t / self.num_diffusion_steps).unsqueeze(-1))
        x = latent
        for j, step in enumerate(steps):
            x = x + self.step_coef[step] * self.network.forward_features(condition, x, time_features[j])
        return x

    def extra_repr(self) -> str:
        return (
            f"observation_dim={self.observation_dim}, action_dim={self.action_dim}, "
            f"num_diffusion_steps={self.num_diffusion_steps}"
        )
