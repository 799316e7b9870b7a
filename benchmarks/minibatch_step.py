"""How fast one PPO minibatch step of the default preset's shapes can go on these cores, by how it is run.

The update of ``cpu_fast`` is overhead-bound (docs/performance.md, "Where the update's time went"): per 500-row
minibatch the matmuls take about a third of the time, the rest is the compiled region's wrappers, autograd, the clip,
Adam and the metric sums. This script measures what a different structure would buy before anyone rewrites the
update. It rebuilds the preset's minibatch step in plain torch, with no TensorDict or TorchRL in the loop (a sketch
for timing: the same layer shapes and the same kinds of ops, not the project's losses), and times it run three
ways, taking turns:

- ``eager``: modules, losses, backward, ``clip_grad_norm_`` and fused Adam, all eager;
- ``compiled losses``: the losses compiled, autograd runs their compiled backward, clip and fused Adam eager
  (the structure of ``PPOUpdate`` with ``ppo.compile``);
- ``one graph``: forward, gradients (``torch.func.grad``), the global-norm clip and Adam in one compiled function
  that updates the weights and Adam's moments in place: one call per minibatch.

It prints each variant's median milliseconds per step, its rate in rows/s and its GFLOP/s against a dense matmul rate
measured in the same run, and the ratios between variants (the box is shared: read the ratios).

    python benchmarks/minibatch_step.py
    python benchmarks/minibatch_step.py --rows 500 --critic 256 256 --steps 300
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch import nn
from torch.func import functional_call, grad

from train_throughput import matmul_gflops

HALF_LOG_2PI = 0.9189385332046727  # log N(x; mu, sigma) = -(x - mu)^2 / (2 sigma^2) - log sigma - log(2 pi) / 2


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))


class Nets(nn.Module):
    """The latent actor (its loc and scale heads in one layer) and the critic."""

    def __init__(self, obs_dim: int, latent_dim: int, actor_cells: list[int], critic_cells: list[int]) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.actor = mlp([obs_dim, *actor_cells, 2 * latent_dim])
        self.critic = mlp([obs_dim, *critic_cells, 1])

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return losses(self, batch)

    def latent_dist(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self.actor(obs).split(self.latent_dim, dim=-1)
        return loc, (nn.functional.softplus(raw) + 1e-3).clamp(1e-3, 10.0)


def losses(nets: Nets, batch: dict[str, torch.Tensor], clip: float = 0.3, entropy_coeff: float = 0.01,
           critic_coeff: float = 0.25, prior_coeff: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped PPO on a diagonal Gaussian, analytic entropy, l2 critic loss, and the l2 latent regulariser with its
    own actor pass (as ``LatentPriorLoss``). Returns the total loss and a vector of metrics."""
    obs, latent, old_log_prob = batch["observation"], batch["latent"], batch["log_prob"]
    advantage = batch["advantage"]
    advantage = (advantage - advantage.mean()) / advantage.std().clamp_min(1e-6)
    loc, scale = nets.latent_dist(obs)
    log_prob = (-((latent - loc) ** 2) / (2 * scale**2) - scale.log() - HALF_LOG_2PI).sum(-1)
    ratio = (log_prob - old_log_prob).exp()
    gain = torch.minimum(ratio * advantage, ratio.clamp(1 - clip, 1 + clip) * advantage)
    entropy = (scale.log() + 0.5 + HALF_LOG_2PI).sum(-1).mean()
    value = nets.critic(obs).squeeze(-1)
    loss_objective = -gain.mean()
    loss_entropy = -entropy_coeff * entropy
    loss_critic = critic_coeff * (value - batch["value_target"]).pow(2).mean()
    prior_loc, prior_scale = nets.latent_dist(obs)
    loss_prior = prior_coeff * (prior_loc.pow(2).mean() + prior_scale.pow(2).mean())
    clip_fraction = ((ratio - 1).abs() > clip).float().mean()
    metrics = torch.stack([loss_objective, loss_entropy, loss_critic, loss_prior, entropy, clip_fraction,
                           (ratio - 1 - (ratio.log())).mean()]).detach()
    return loss_objective + loss_entropy + loss_critic + loss_prior, metrics


class EagerStep:
    """Losses (optionally compiled), autograd, ``clip_grad_norm_`` and fused Adam, as ``PPOUpdate`` runs them."""

    def __init__(self, nets: Nets, compiled: bool, max_norm: float = 1.0) -> None:
        self.nets, self.max_norm = nets, max_norm
        self.params = list(nets.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=1e-3, fused=True)
        self.losses = torch.compile(nets, dynamic=False) if compiled else nets

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss, metrics = self.losses(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        self.optimizer.step()
        return torch.cat([metrics, grad_norm.reshape(1)])


class OneGraphStep:
    """Forward, ``torch.func.grad``, the clip and Adam in one compiled function; weights and moments in place."""

    def __init__(self, nets: Nets, max_norm: float = 1.0, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        self.nets = nets
        self.params = {k: v.detach() for k, v in nets.named_parameters()}
        self.exp_avg = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.exp_avg_sq = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.count = torch.zeros(())
        self.hparams = (max_norm, lr, betas, eps)
        self.step = torch.compile(self._step, dynamic=False)

    def _step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        max_norm, lr, (beta1, beta2), eps = self.hparams
        grads, metrics = grad(functional_call, argnums=1, has_aux=True)(self.nets, self.params, (batch,))
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads.values()]))
        coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        self.count.add_(1)
        bias1, bias2 = 1 - beta1**self.count, 1 - beta2**self.count
        for k, p in self.params.items():
            g = grads[k] * coef
            self.exp_avg[k].lerp_(g, 1 - beta1)
            self.exp_avg_sq[k].mul_(beta2).addcmul_(g, g, value=1 - beta2)
            p.sub_(lr / bias1 * self.exp_avg[k] / ((self.exp_avg_sq[k] / bias2).sqrt() + eps))
        return torch.cat([metrics, norm.reshape(1)])

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.step(batch)


def flops_per_step(rows: int, obs_dim: int, latent_dim: int, actor_cells: list[int], critic_cells: list[int]) -> float:
    """Matmul FLOPs of one step: forward and backward (2x) of the critic and of the actor's two passes."""
    def mlp_flops(sizes):
        return 2 * rows * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    actor = mlp_flops([obs_dim, *actor_cells, 2 * latent_dim])
    critic = mlp_flops([obs_dim, *critic_cells, 1])
    return 3 * (critic + 2 * actor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500, help="minibatch rows (cpu_fast: 500)")
    parser.add_argument("--obs-dim", type=int, default=17, help="observation size (cheetah-run: 17)")
    parser.add_argument("--latent-dim", type=int, default=6, help="latent size (cheetah-run: 6)")
    parser.add_argument("--actor", type=int, nargs="+", default=[32, 32, 32, 32])
    parser.add_argument("--critic", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (cpu_fast's ppo.num_threads: 2)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = {"observation": torch.randn(args.rows, args.obs_dim), "latent": torch.randn(args.rows, args.latent_dim),
             "log_prob": torch.randn(args.rows) - 8.0, "advantage": torch.randn(args.rows),
             "value_target": torch.randn(args.rows)}

    def nets() -> Nets:
        torch.manual_seed(0)
        return Nets(args.obs_dim, args.latent_dim, args.actor, args.critic)

    variants = {"eager": EagerStep(nets(), compiled=False), "compiled losses": EagerStep(nets(), compiled=True),
                "one graph": OneGraphStep(nets())}
    compile_s = {}
    for name, step in variants.items():
        start = time.perf_counter()
        for _ in range(3):
            step(batch)
        compile_s[name] = time.perf_counter() - start
    # the same work: from the same weights, 3 steps of each variant end at the same weights up to float rounding
    weights = {name: torch.cat([p.detach().flatten() for p in step.nets.parameters()]) for name, step in variants.items()}
    differences = {name: (w - weights["eager"]).abs().max().item() for name, w in weights.items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step(batch)
            times[name].append((time.perf_counter() - start) / args.steps)
    matmul = matmul_gflops(args.threads, rows=args.rows)
    flops = flops_per_step(args.rows, args.obs_dim, args.latent_dim, args.actor, args.critic)
    print(f"one minibatch step, {args.rows} rows, actor {args.actor}, critic {args.critic}, {args.threads} threads; "
          f"{flops / 1e6:.0f} MFLOP of matmuls; {args.rows}x256 @ 256x256 matmul {matmul:.0f} GFLOP/s")
    base = statistics.median(times["compiled losses"])
    for name, spent in times.items():
        ms = statistics.median(spent)
        print(f"  {name:16s} {ms * 1e3:6.2f} ms   {args.rows / ms:>9,.0f} rows/s   {flops / ms / 1e9:5.1f} GFLOP/s "
              f"({flops / ms / 1e9 / matmul:.2f} of the matmul)   compiled losses / this {base / ms:.2f}   "
              f"first 3 steps {compile_s[name]:.1f} s, then weights within {differences[name]:.0e} of eager's")
    print(f"  matmuls alone would take {flops / matmul / 1e6:.2f} ms")


if __name__ == "__main__":
    main()
