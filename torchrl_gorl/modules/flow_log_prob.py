"""Log-densities of a flow's Euler sampler, by change of variables along the path (for GMPG)."""
from __future__ import annotations

import math

import torch

from torchrl_gorl.modules.flow_decoder import FlowDecoderModule

DIVERGENCES = ("exact", "hutchinson")


def _standard_normal_log_prob(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * x.pow(2).sum(-1) - 0.5 * x.shape[-1] * math.log(2 * math.pi)


def _step_log_det(velocity: torch.Tensor, x: torch.Tensor, dt: float, divergence: str, create_graph: bool) -> torch.Tensor:
    """``log |det(I + dt * dv/dx)|`` of one Euler step ``x -> x + dt * v(x)``, shape ``[*B]``.

    ``"exact"`` builds the ``d x d`` Jacobian (``d`` backward passes) and takes its log-determinant:
    the exact density of the discrete sampler. ``"hutchinson"`` estimates the first-order term
    ``dt * tr(dv/dx)`` with one Rademacher probe (unbiased for the ODE's divergence; exact for
    ``d`` = 1 and for isotropic linear velocities).
    """
    if divergence == "exact":
        rows = [torch.autograd.grad(velocity[..., i].sum(), x, create_graph=create_graph, retain_graph=True)[0]
                for i in range(x.shape[-1])]
        jacobian = torch.stack(rows, dim=-2)
        eye = torch.eye(x.shape[-1], device=x.device, dtype=x.dtype)
        return torch.linalg.slogdet(eye + dt * jacobian)[1]
    probe = torch.randint(0, 2, x.shape, device=x.device).to(x.dtype) * 2 - 1
    vjp = torch.autograd.grad((velocity * probe).sum(), x, create_graph=create_graph, retain_graph=True)[0]
    return dt * (vjp * probe).sum(-1)


def _check(flow, divergence: str) -> None:
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {list(DIVERGENCES)}, got {divergence!r}.")
    if not hasattr(flow, "velocity") or not hasattr(flow, "num_steps"):
        raise TypeError(f"expected a flow with velocity() and num_steps (e.g. FlowDecoderModule), got {type(flow).__name__}.")


def flow_sample_log_prob(
    flow: FlowDecoderModule, observation: torch.Tensor, latent: torch.Tensor, *, divergence: str = "exact"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Runs the flow's Euler sampler from ``latent ~ N(0, I)`` and returns ``(action, log p(action | s))``.

    ``log p(a) = log N(z) - sum_k log |det(I + dt J_k)|`` along the sampled path (``dt = -1/K``). Differentiable
    in the flow's parameters and in ``latent`` when gradients are enabled, as GMPG needs.

    Examples:
        >>> import torch
        >>> from torchrl_gorl import FlowDecoderModule
        >>> flow = FlowDecoderModule.identity(3, 2)
        >>> a, log_prob = flow_sample_log_prob(flow, torch.randn(4, 3), torch.zeros(4, 2))
        >>> torch.allclose(log_prob, torch.full((4,), -math.log(2 * math.pi)))
        True
    """
    _check(flow, divergence)
    create_graph = torch.is_grad_enabled()
    dt = -1.0 / flow.num_steps
    with torch.enable_grad():
        x = latent if latent.requires_grad else latent.detach().requires_grad_(True)
        log_prob = _standard_normal_log_prob(x)
        for k in range(flow.num_steps):
            t = torch.full((*x.shape[:-1], 1), 1.0 - k / flow.num_steps, device=x.device, dtype=x.dtype)
            velocity = flow.velocity(observation, x, t)
            log_prob = log_prob - _step_log_det(velocity, x, dt, divergence, create_graph)
            x = x + dt * velocity
    if not create_graph:
        return x.detach(), log_prob.detach()
    return x, log_prob


def flow_log_prob(flow: FlowDecoderModule, observation: torch.Tensor, action: torch.Tensor, *,
                  divergence: str = "exact") -> torch.Tensor:
    """``log p(action | s)`` of a flow, by integrating it back to the noise with Euler steps from ``t = 0`` to 1.

    ``z = T(a)`` with ``x <- x + v(x, t_j) / K``, ``t_j = j / K``; ``log p(a) = log N(z) + sum_j log |det(I + J_j / K)|``,
    the exact density of the inverse-direction Euler map (the usual CNF likelihood; it equals the sampler's
    density as ``K`` grows). Differentiable in ``action`` (and the flow's parameters if they require grad).

    Examples:
        >>> import torch
        >>> from torchrl_gorl import FlowDecoderModule
        >>> flow = FlowDecoderModule.identity(3, 2)  # zero velocity: the density is N(0, I)'s
        >>> action = torch.randn(4, 2)
        >>> log_prob = flow_log_prob(flow, torch.randn(4, 3), action)
        >>> torch.allclose(log_prob, torch.distributions.Normal(0.0, 1.0).log_prob(action).sum(-1))
        True
    """
    _check(flow, divergence)
    create_graph = torch.is_grad_enabled()
    dt = 1.0 / flow.num_steps
    with torch.enable_grad():
        x = action if action.requires_grad else action.detach().requires_grad_(True)
        log_det = torch.zeros(x.shape[:-1], device=x.device, dtype=x.dtype)
        for j in range(flow.num_steps):
            t = torch.full((*x.shape[:-1], 1), j / flow.num_steps, device=x.device, dtype=x.dtype)
            velocity = flow.velocity(observation, x, t)
            log_det = log_det + _step_log_det(velocity, x, dt, divergence, create_graph)
            x = x + dt * velocity
        log_prob = _standard_normal_log_prob(x) + log_det
    return log_prob if create_graph else log_prob.detach()
