"""GMPO and GMPG on the 2D Swiss-roll toy of "Revisiting Generative Policies" (arXiv 2412.01245).

Behaviour data are points on a spiral; the value of a point grows with its distance from the centre.
A flow policy (no observation: one constant input) is trained on the data by

* GMPO: flow matching weighted by ``min(exp(beta * A), w_max)``, ``A = value - mean value`` (``GMPOLoss``);
* GMPG: a behaviour flow fit by flow matching, then a policy initialised from it and trained by
  ``-beta * value + KL(pi || mu)`` through its sampler (``GMPGLoss``, exact divergence in 2D).

Both should move their samples outward along the spiral. Writes ``swiss_roll.png`` (data, samples and
generation paths) and ``swiss_roll.json`` (mean values), in ``--out``.

    python sota-implementations/swiss_roll.py --out outputs/swiss_roll
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import pathlib

import torch
from tensordict import TensorDict

from torchrl_gorl import FlowDecoderModule, FlowMatchingLoss, GMPGLoss, GMPOLoss


def swiss_roll(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` points on the spiral ``r(theta) = theta / (4.5 pi)``, ``theta in [1.5 pi, 4.5 pi]``, plus small noise."""
    theta = math.pi * (1.5 + 3.0 * torch.rand(n, generator=generator))
    points = (theta / (4.5 * math.pi)).unsqueeze(-1) * torch.stack([theta.cos(), theta.sin()], -1)
    return points + 0.02 * torch.randn(n, 2, generator=generator)


def value(points: torch.Tensor) -> torch.Tensor:
    """The toy's value: the distance from the centre (about 0.33 at the inner end, 1 at the outer end)."""
    return points.norm(dim=-1)


class ToyCritic:
    """The known value as GMPG's ``Q(s, a)``: differentiable in the action, nothing to train."""

    def min_qvalue(self, tensordict):
        return value(tensordict["action"])


def make_flow(seed: int) -> FlowDecoderModule:
    torch.manual_seed(seed)
    return FlowDecoderModule(1, 2, num_cells=(64, 64, 64), num_steps=10)


def _fit(loss_fn, loss_key: str, data: TensorDict, steps: int, lr: float, generator: torch.Generator) -> None:
    optim = torch.optim.Adam(loss_fn.parameters(), lr=lr)
    for _ in range(steps):
        batch = data[torch.randint(data.shape[0], (512,), generator=generator)]
        loss = loss_fn(batch)[loss_key]
        optim.zero_grad()
        loss.backward()
        optim.step()


def train_gmpo(data: TensorDict, *, steps: int, beta: float = 8.0, max_weight: float = 100.0, seed: int = 0,
               generator: torch.Generator) -> FlowDecoderModule:
    flow = make_flow(seed)
    data = data.clone()
    data["advantage"] = value(data["action"]) - value(data["action"]).mean()  # V(s) = E[Q] for one state
    _fit(GMPOLoss(flow, beta=beta, max_weight=max_weight, num_noise_samples=4), "loss_gmpo", data, steps, 1e-3, generator)
    return flow


def train_behaviour(data: TensorDict, *, steps: int, seed: int = 0, generator: torch.Generator) -> FlowDecoderModule:
    flow = make_flow(seed)
    _fit(FlowMatchingLoss(flow, num_noise_samples=4), "loss_flow_matching", data, steps, 1e-3, generator)
    return flow


def train_gmpg(behaviour: FlowDecoderModule, *, steps: int, beta: float = 4.0, batch_size: int = 256) -> FlowDecoderModule:
    policy = copy.deepcopy(behaviour).requires_grad_(True)
    loss_fn = GMPGLoss(policy, copy.deepcopy(behaviour), ToyCritic(), beta=beta, divergence="exact")
    optim = torch.optim.Adam(policy.parameters(), lr=3e-4)
    observation = TensorDict(observation=torch.zeros(batch_size, 1), batch_size=[batch_size])
    for _ in range(steps):
        loss = loss_fn(observation)["loss_gmpg"]
        optim.zero_grad()
        loss.backward()
        optim.step()
    return policy


@torch.no_grad()
def sample_paths(flow: FlowDecoderModule, n: int, generator: torch.Generator) -> torch.Tensor:
    """Euler paths ``[n, K + 1, 2]`` from ``x_1 ~ N(0, I)`` (index 0) to the samples (index K)."""
    return flow.sample_path(torch.zeros(n, 1), torch.randn(n, 2, generator=generator))[1]


def plot(data: torch.Tensor, results: dict[str, torch.Tensor], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(results), figsize=(4 * (1 + len(results)), 4), sharex=True, sharey=True)
    axes[0].scatter(*data.T, c=value(data), s=2, cmap="viridis")
    axes[0].set_title(f"behaviour data\nmean value {value(data).mean():.2f}", fontsize=9)
    for ax, (name, paths) in zip(axes[1:], results.items()):
        for p in paths[:40]:
            ax.plot(*p.T, color="grey", lw=0.5, alpha=0.5)
        samples = paths[:, -1]
        ax.scatter(*samples.T, c=value(samples), s=2, cmap="viridis", vmin=0.3, vmax=1.0)
        ax.set_title(f"{name}: samples and paths\nmean value {value(samples).mean():.2f}", fontsize=9)
    for ax in axes:
        ax.set_xlim(-1.3, 1.3), ax.set_ylim(-1.3, 1.3), ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/swiss_roll")
    parser.add_argument("--num-points", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=3000, help="flow-matching steps (GMPO and the behaviour flow)")
    parser.add_argument("--gmpg-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(args.seed)
    points = swiss_roll(args.num_points, generator)
    data = TensorDict(observation=torch.zeros(args.num_points, 1), action=points, batch_size=[args.num_points])
    behaviour = train_behaviour(data, steps=args.steps, seed=args.seed, generator=generator)
    flows = {"behaviour (flow matching)": behaviour,
             "GMPO": train_gmpo(data, steps=args.steps, seed=args.seed, generator=generator),
             "GMPG": train_gmpg(behaviour, steps=args.gmpg_steps)}
    results = {name: sample_paths(flow, 2048, generator) for name, flow in flows.items()}
    plot(points, results, out / "swiss_roll.png")
    summary = {"data_mean_value": value(points).mean().item(),
               **{f"{name}_mean_value": value(paths[:, -1]).mean().item() for name, paths in results.items()},
               "command": "python sota-implementations/swiss_roll.py " + " ".join(
                   f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items())}
    (out / "swiss_roll.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
