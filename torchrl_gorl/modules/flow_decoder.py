"""Flow-matching decoder: an Euler-integrated ODE from the latent (t = 1) to the action (t = 0)."""
from __future__ import annotations

from collections.abc import Callable

import torch

from torchrl_gorl.modules._utils import check_last_dim, check_positive
from torchrl_gorl.modules.decoder import GenerativeDecoder


class FlowDecoderModule(GenerativeDecoder):
    """GoRL's flow-matching decoder ``a = g_phi(s, z)``.

    A velocity network ``v_phi(s, x_t, t)`` (see :class:`ConditionalDecoderNetwork`) is
    integrated with explicit Euler from ``t = 1`` (``x = z``) to ``t = 0`` over ``num_steps``
    equal steps: ``x <- x - v(s, x, t) / num_steps``, the velocity taken at the left end of each
    step. Training (:class:`~torchrl_gorl.objectives.FlowMatchingLoss`) uses the path
    ``x_t = t * eps + (1 - t) * a`` with target ``eps - a``, so ``t = 1`` is noise and ``t = 0`` is the
    action. The sampler is deterministic given ``(s, z)``, which keeps the latent log-probability
    the full policy likelihood for PPO.

    Args:
        observation_dim (int): observation size.
        action_dim (int): action size, also the latent size (the ODE starts from the latent).

    Keyword Args:
        num_steps (int): Euler steps. Defaults to 10.
        output_scale (float): the velocity is ``output_scale * MLP(...)``; FPO's policy network
            uses 0.25. Defaults to 1.0.
        num_cells (sequence of int): hidden sizes of the velocity MLP. Defaults to ``(64,) * 4``.
        activation_class (type): hidden activation. Defaults to SiLU.
        num_frequencies (int): time-embedding frequencies. Defaults to 4.
        observation_key, latent_key, action_key (NestedKey): the keys read and written.
            Default to ``"observation"``, ``"latent"`` and ``"action"``.
        device: where to build the parameters.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> decoder = FlowDecoderModule.identity(observation_dim=17, action_dim=6)
        >>> td = TensorDict(observation=torch.randn(5, 17), latent=torch.randn(5, 6), batch_size=[5])
        >>> bool((decoder(td)["action"] == td["latent"]).all())
        True
        >>> decoder.decode(torch.randn(17), torch.randn(6)).shape
        torch.Size([6])
    """

    def __init__(
        self, observation_dim: int, action_dim: int, *, num_steps: int = 10, output_scale: float = 1.0, **kwargs
    ) -> None:
        check_positive(num_steps=num_steps)
        if isinstance(output_scale, bool) or not isinstance(output_scale, (int, float)) or not output_scale > 0:
            raise ValueError(f"output_scale must be a positive number, got {output_scale!r}.")
        super().__init__(observation_dim, action_dim, **kwargs)
        self.num_steps = num_steps
        self.output_scale = float(output_scale)

    def velocity(self, observation: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``v_phi(s, x_t, t)`` for a raw observation; ``t`` has a trailing singleton dimension."""
        return self.output_scale * self.network(self.observation_norm(observation), x, t)

    def step_times(self, like: torch.Tensor) -> torch.Tensor:
        """``t_k = 1 - k / K`` for ``k < K``: the left ends of the Euler steps, shape ``[K, 1]``."""
        k = torch.arange(self.num_steps, device=like.device, dtype=like.dtype)
        return (1.0 - k / self.num_steps).unsqueeze(-1)

    def step_velocity(self, condition: torch.Tensor, x: torch.Tensor, time_features: torch.Tensor) -> torch.Tensor:
        """Velocity from precomputed observation and time terms (see :class:`ConditionalDecoderNetwork`)."""
        return self.output_scale * self.network.forward_features(condition, x, time_features)

    def sample_path(
        self, observation: torch.Tensor, latent: torch.Tensor, *, step_noise: Callable[[int, torch.Tensor], torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The Euler path from ``latent`` (raw observation): ``(action, path [*B, K + 1, d])``, path[0] = latent.

        ``step_noise(k, x)``, if given, is added after step ``k`` (Euler-Maruyama sampling of a stochastic policy).
        """
        check_last_dim(observation, self.observation_dim, "observation")
        check_last_dim(latent, self.action_dim, "latent")
        path = [latent]
        action = self._integrate(self.observation_norm(observation), latent, step_noise, path)
        return action, torch.stack(path, dim=-2)

    def _integrate(self, observation: torch.Tensor, latent: torch.Tensor, step_noise=None, path: list | None = None) -> torch.Tensor:
        condition = self.network.condition(observation)
        time_features = self.network.time_features(self.step_times(latent))
        dt = -1.0 / self.num_steps
        x = latent
        for k in range(self.num_steps):
            x = x + dt * self.step_velocity(condition, x, time_features[k])
            if step_noise is not None:
                x = x + step_noise(k, x)
            if path is not None:
                path.append(x)
        return x

    def _sample(self, observation: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        return self._integrate(observation, latent)

    def sampler_config(self) -> dict[str, float]:
        config: dict[str, float] = {"num_steps": self.num_steps}
        if self.output_scale != 1.0:  # kept out otherwise: state_dicts of unscaled decoders stay as they were
            config["output_scale"] = self.output_scale
        return config

    def extra_repr(self) -> str:
        return (f"observation_dim={self.observation_dim}, action_dim={self.action_dim}, num_steps={self.num_steps}, "
                f"output_scale={self.output_scale}")
