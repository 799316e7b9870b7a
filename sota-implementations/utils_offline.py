"""Shared pieces of the offline scripts (gmpo.py, gmpg.py): the dataset, IQL critics,
supervised fitting, evaluation and outputs. Online pieces (env factory, logger, seeds) come from utils_gorl."""
from __future__ import annotations

import csv
import json
import pathlib
import time
from typing import Any, Callable

import torch
from tensordict import TensorDictBase
from omegaconf import DictConfig, OmegaConf
from torchrl.objectives import SoftUpdate

from torchrl_gorl import DiffusionDecoderModule, FlowDecoderModule, IQLCriticLoss, make_iql_critics, make_prior_policy
from torchrl_gorl.envs import make_env, task_id
from torchrl_gorl.training import evaluate_policy, load_transitions, TRANSITION_KEYS
from torchrl_gorl.configs import validate_config
from utils_gorl import batch_seed, get_device, make_run_logger, quiet_logs
from utils_gorl import seed_everything, set_threads


def setup_offline(cfg: DictConfig, method: str) -> tuple[torch.device, str]:
    quiet_logs()
    validate_config(cfg, method=method)
    set_threads(cfg.num_threads)
    seed_everything(cfg.env.seed)
    return get_device(cfg.device), task_id(cfg.env.task)


def load_dataset(cfg: DictConfig, device: torch.device):
    """All transitions of ``dataset.paths`` (relative to where the command ran): the replay buffer the updates
    sample from and its whole content, read once (observation statistics, dataset returns, sizes)."""
    from hydra.utils import to_absolute_path

    paths = [cfg.dataset.paths] if isinstance(cfg.dataset.paths, str) else list(cfg.dataset.paths)
    try:
        buffer = load_transitions([to_absolute_path(p) for p in paths], batch_size=cfg.dataset.batch_size,
                                  required_keys=TRANSITION_KEYS, device=device)
    except ValueError as err:
        raise ValueError(f"config key dataset.paths: {err}") from None
    return buffer, buffer[:]


def episode_returns(data: TensorDictBase) -> torch.Tensor:
    """Undiscounted returns of the complete episodes in flat transitions whose episodes are contiguous rows
    (what ``save_transitions`` writes from a ``[num_envs, T]`` batch): the behaviour policy's return, the
    reference point of an offline method. Rows after the last ``done`` belong to no complete episode."""
    reward = data["next", "reward"].reshape(-1).double()
    done = data["next", "done"].reshape(-1).nonzero().squeeze(-1)
    if done.numel() == 0:
        return reward.new_zeros(0)
    ends = torch.cat([done.new_zeros(1), done + 1])
    cumulative = torch.cat([reward.new_zeros(1), reward.cumsum(0)])
    return cumulative[ends[1:]] - cumulative[ends[:-1]]


def dims(data: TensorDictBase) -> tuple[int, int]:
    """Observation and action sizes of a dataset."""
    return data["observation"].shape[-1], data["action"].shape[-1]


def make_decoder(cfg: DictConfig, data: TensorDictBase, device):
    """The generative policy's decoder, sized by and with observation statistics from the dataset ``data``."""
    obs_dim, act_dim = dims(data)
    if cfg.decoder.type == "flow":
        decoder = FlowDecoderModule(obs_dim, act_dim, num_cells=tuple(cfg.decoder.num_cells),
                                    num_steps=cfg.decoder.num_steps, device=device)
    else:
        decoder = DiffusionDecoderModule(obs_dim, act_dim, num_cells=tuple(cfg.decoder.num_cells),
                                         num_diffusion_steps=cfg.decoder.num_diffusion_steps, device=device)
    decoder.observation_norm.update(data["observation"])
    return decoder


def fit(loss_fn, loss_keys: tuple[str, ...], params, buffer, steps: int, lr: float, *,
        after_step: Callable[[int], None] | None = None, log: Callable[[dict, int], None] | None = None,
        batch: Callable[[], Any] | None = None) -> None:
    """Adam on ``sum(loss_fn(batch)[k] for k in loss_keys)`` for ``steps`` minibatches of ``buffer``."""
    optimizer = torch.optim.Adam(params, lr=lr)
    for step in range(1, steps + 1):
        out = loss_fn(buffer.sample() if batch is None else batch())
        loss = sum(out[k] for k in loss_keys)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step(step)
        if log is not None and (step % 100 == 0 or step == steps):
            log({k: float(v.detach()) for k, v in out.items()}, step)


def train_critics(cfg: DictConfig, buffer, data: TensorDictBase, device, logger: "OfflineRun") -> IQLCriticLoss:
    """IQL: expectile V and double Q on the dataset's transitions (rewards as stored: raw env rewards)."""
    q, v = make_iql_critics(*dims(data), num_cells=tuple(cfg.critic.num_cells), device=device)
    critic = IQLCriticLoss(q, v, expectile=cfg.critic.expectile, gamma=cfg.critic.gamma)
    target = SoftUpdate(critic, tau=cfg.critic.tau)
    fit(critic, ("loss_value", "loss_qvalue"), critic.parameters(), buffer, cfg.critic.steps, cfg.critic.lr,
        after_step=lambda step: target.step(), log=lambda m, s: logger.log("critic", m, s))
    return critic


class OfflineRun:
    """Evaluation on dm_control (the online protocol: deterministic, full 1000-step episodes), logging and outputs."""

    FIELDS = ["phase", "step", "return_mean", "return_std", "return_min", "return_max", "num_episodes"]

    def __init__(self, cfg: DictConfig, algo: str, task: str, data: TensorDictBase) -> None:
        self.cfg, self.task, self.dataset_size = cfg, task, data.shape[0]
        returns = episode_returns(data)
        self.dataset_returns = {"dataset_episodes": returns.numel(),
                                "dataset_return_mean": float(returns.mean()) if returns.numel() else float("nan"),
                                "dataset_return_std": float(returns.std(correction=0)) if returns.numel() else float("nan")}
        self.eval_env = make_env(task, cfg.eval.num_envs, backend="batched")
        self.logger = make_run_logger(cfg, algo, task)
        self.rows: list[dict[str, Any]] = []
        self.frames_eval = 0
        self.start = time.time()

    def log(self, phase: str, metrics: dict[str, float], step: int) -> None:
        self.logger.log({f"{phase}/{k}": v for k, v in metrics.items()}, step)

    def evaluate(self, decoder, phase: str, step: int) -> dict[str, float]:
        result = evaluate_policy(self.eval_env, make_prior_policy(decoder), num_episodes=self.cfg.eval.num_episodes,
                                 seed=batch_seed(self.cfg.env.seed, 0, len(self.rows), kind=3))
        self.frames_eval += result.pop("frames")
        row = {"phase": phase, "step": step, **result}
        self.rows.append(row)
        # one metric per phase: the behaviour flow's and the policy's evaluations share step numbers
        self.log(f"eval_{phase}", {k: row[k] for k in ("return_mean", "return_std")}, step)
        return row

    def finish(self, policy_decoder, step: int, **extra: Any) -> dict[str, Any]:
        """A fresh evaluation of the trained policy (after ``step`` policy updates), then eval.csv and summary.json."""
        final = self.evaluate(policy_decoder, "final", step)
        self.eval_env.close()
        out = pathlib.Path.cwd()
        with open(out / "eval.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)
        summary = {**extra, "task": self.task, "seed": self.cfg.env.seed, "dataset_transitions": self.dataset_size,
                   **self.dataset_returns,
                   "final_return": final["return_mean"], "final_return_std": final["return_std"],
                   "frames_eval": self.frames_eval, "wall_time_s": time.time() - self.start,
                   "config": OmegaConf.to_container(self.cfg, resolve=True)}
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary
