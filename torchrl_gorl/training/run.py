"""What happens around a PPO training loop: seeded collection, deterministic evaluation that keeps the stage's best
encoder, logging, checkpoints that resume the run exactly, Ctrl-C, and the final evaluation and summary."""
from __future__ import annotations

import logging
import math
import pathlib
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.checkpoint import GlobalRNGState
from torchrl.envs import EnvBase

from torchrl_gorl.collectors import collect_batch
from torchrl_gorl.training.checkpoint import save_checkpoint
from torchrl_gorl.training.evaluation import evaluate_policy
from torchrl_gorl.training.interrupt import StopRequest
from torchrl_gorl.training.ppo_update import PPOUpdate
from torchrl_gorl.training.run_logger import RunLogger
from torchrl_gorl.training.run_state import RunState
from torchrl_gorl.training.schedule import batch_seed

__all__ = ["TrainingRun"]

log = logging.getLogger("gorl")

#: a refit's entry in summary.json, in this order
REFIT_FIELDS = ("stage", "rows", "best_val_loss", "best_epoch", "epochs_run")


def train_episode_metrics(data: TensorDictBase) -> dict[str, float]:
    """The mean return of the episodes a batch finished (TorchRL's ``RewardSum`` key), if any."""
    done = data.get(("next", "done")).squeeze(-1)
    if not done.any():
        return {}
    return {"train/episode_reward": data.get(("next", "episode_reward"))[done].mean().item()}


class TrainingRun:
    """The bookkeeping of one training run around the loop a script writes out (``gorl_ppo.py``).

    It holds the :class:`~torchrl_gorl.training.RunState` (counters, the stage's best encoder) and does, when the
    loop asks: the next batch as a function of a seed (:meth:`collect`), a deterministic evaluation that keeps the
    stage's best encoder and ends the run at ``target_return`` (:meth:`evaluate`), the end of an iteration
    (counters, metrics, a checkpoint every ``checkpoint_interval`` encoder env steps, a stop after Ctrl-C), the end
    of a stage, and the final evaluation on fresh episodes with ``summary.json`` (:meth:`finish`).

    Checkpoints are ``torchrl.checkpoint`` archives that load tensors, plain containers and JSON only
    (:func:`~torchrl_gorl.training.save_checkpoint`); :meth:`restore` continues one exactly: the modules, the
    optimiser, the run state, the global RNGs and, where batches run on across iterations (``reseed_envs=False``),
    the collector's envs and sampling RNGs.

    Args:
        policy: the policy the collector runs and the evaluation scores (GoRL: encoder plus decoder).
        actor, critic: the PPO actor (GoRL: the latent encoder) and critic, whose best pair per stage is kept.
        ppo: their :class:`~torchrl_gorl.training.PPOUpdate`.
        collector: the training collector; ``eval_env``: the evaluation envs.
        logger: the run's :class:`~torchrl_gorl.training.RunLogger`.
        seed: the run's seed (evaluation seeds derive from it).
        num_eval_episodes: episodes per evaluation. ``target_return``: an evaluation that reaches it ends the run.
        checkpoint_dir: where checkpoints go; ``checkpoint_interval``: encoder env steps between checkpoints within
            a stage (0: at stage ends only); ``keep_all`` / ``keep_best``: keep every checkpoint / also the one
            after the best evaluation (by default the latest only).
        reseed_envs: whether each batch reseeds the envs (full-episode batches); otherwise the collector's state
            goes into checkpoints.
        config: the run's settings as plain values, saved in checkpoints (see :meth:`restore`).
        info: further plain values saved at the top level of each checkpoint for the caller's resume checks
            (the scripts save the env's ``dims``).
        decoder: GoRL's decoder, checkpointed with the rest.
        title: the learning curve's title. ``started``: the time the run's wall clock starts from.

    Examples:
        See ``sota-implementations/gorl_ppo.py``, whose stage loop uses every method; ``tests/test_training_run.py``
        runs a short loop on cartpole.
    """

    def __init__(self, *, policy: Callable, actor: torch.nn.Module, critic: torch.nn.Module, ppo: PPOUpdate,
                 collector, eval_env: EnvBase, logger: RunLogger, seed: int, num_eval_episodes: int,
                 checkpoint_dir: str | pathlib.Path, config: dict[str, Any], target_return: float | None = None,
                 checkpoint_interval: int = 0, keep_all: bool = False, keep_best: bool = False,
                 reseed_envs: bool = True, decoder: torch.nn.Module | None = None, title: str = "",
                 device: torch.device | str = "cpu", started: float | None = None,
                 info: dict[str, Any] | None = None) -> None:
        self.policy, self.actor, self.critic, self.decoder = policy, actor, critic, decoder
        self.ppo, self.collector, self.eval_env, self.logger = ppo, collector, eval_env, logger
        self.seed, self.num_eval_episodes, self.target_return = seed, num_eval_episodes, target_return
        self.checkpoint_dir, self.checkpoint_interval = checkpoint_dir, checkpoint_interval
        self.keep_all, self.keep_best, self.reseed_envs = keep_all, keep_best, reseed_envs
        self.config, self.title, self.device = config, title, torch.device(device)
        self.info = dict(info or {})
        self.batches = iter(collector)
        self.state = RunState()
        self.start = started or time.time()
        self.last_checkpoint = 0
        self.pbar = None
        self.stop = StopRequest()  # Ctrl-C: finish the iteration, checkpoint, exit 130

    def progress_bar(self, total: int, enabled: bool = True) -> None:
        import tqdm

        self.pbar = tqdm.tqdm(total=total, initial=self.state.total_frames, disable=not enabled)

    def add_frames(self, kind: str, n: int) -> None:
        self.state.add_frames(kind, n)
        if self.pbar is not None and kind != "eval":
            self.pbar.update(n)

    # -- checkpoints
    def checkpoint(self, name: str) -> pathlib.Path:
        """Saves the run at its env-step count (evaluation included, so a checkpoint after an evaluation gets a
        file of its own). A write that fails (no space left, a read-only disk) raises ``OSError`` naming the
        checkpoint, with the previous checkpoint intact."""
        state = self.state
        state.progress["wall_time"] = time.time() - self.start
        components = {"config": self.config, **self.info, **state.state_dict(), "actor": self.actor, "critic": self.critic,
                      "ppo": self.ppo, "rng": GlobalRNGState()}
        if self.decoder is not None:
            components["decoder"] = self.decoder
        if not self.reseed_envs:  # running envs: physics, task RNGs, carried observations, the workers' sampling RNGs
            components["collector"] = self.collector
        best = state.best_return  # of the stage's best encoder, which the checkpoint holds
        metadata = {"name": name, "stage": state.stage, "iteration": state.iteration,
                    "best_return": best if math.isfinite(best) else -1e30}
        try:
            return save_checkpoint(components, self.checkpoint_dir, step=state.total_frames + state.progress["frames_eval"],
                                   keep_last=sys.maxsize if self.keep_all else 1, metadata=metadata,
                                   keep_best="best_return" if self.keep_best else None)
        except (OSError, RuntimeError) as error:  # torch.save reports a full disk as a RuntimeError
            reason = getattr(error, "strerror", None) or str(error)
            raise OSError(getattr(error, "errno", None), f"checkpoint {name!r} could not be written to "
                          f"{str(self.checkpoint_dir)!r} ({reason}); the previous checkpoint there is intact: free "
                          "space or make it writable, then resume from it.") from None

    def restore(self, saved: dict[str, Any]) -> None:
        """Continues from a loaded checkpoint (:func:`~torchrl_gorl.training.load_checkpoint`) of the same run: the
        caller checks that its ``config`` is this run's. ``eval.csv`` is rewritten with the checkpoint's rows."""
        self.actor.load_state_dict(saved["actor"])
        self.critic.load_state_dict(saved["critic"])
        if self.decoder is not None:
            self.decoder.load_state_dict(saved["decoder"])
        self.ppo.load_state_dict(saved["ppo"])
        self.state.load_state_dict(saved)
        if not self.reseed_envs and saved.get("collector") is not None:
            self.collector.load_state_dict(saved["collector"])
        self.logger.restart(self.state.eval_rows)  # eval.csv as at the checkpoint: later rows come again
        self.start = time.time() - self.state.progress["wall_time"]
        self.last_checkpoint = self.state.progress["frames_encoder"]
        rng = dict(saved["rng"])
        if "torch_cuda" in rng and not torch.cuda.is_available():
            del rng["torch_cuda"]
            log.warning("the checkpoint holds CUDA random states but CUDA is not available here: the resumed run "
                        "does not repeat the uninterrupted run exactly.")
        GlobalRNGState().load_state_dict(rng)
        self.collector.update_policy_weights_()
        log.info("resumed at stage %d, iteration %d", self.state.stage, self.state.iteration)

    def stop_if_requested(self) -> None:
        """After Ctrl-C, at the end of an iteration or stage: a checkpoint, the command that resumes the run from it
        (this command with ``checkpoint.resume`` and ``hydra.run.dir`` set, so eval.csv goes on in the same run
        directory), and exit status 130."""
        if not self.stop.requested:
            return
        path = self.checkpoint("interrupted")
        self.collector.shutdown()
        self.eval_env.close()
        keep = [a for a in sys.argv[1:] if not a.startswith(("checkpoint.resume=", "hydra.run.dir="))]
        command = shlex.join([sys.executable, sys.argv[0], *keep, f"hydra.run.dir={pathlib.Path.cwd()}",
                              f"checkpoint.resume={path.resolve()}"])
        print(f"Interrupted: checkpoint {path}. Resume with:\n  {command}", file=sys.stderr, flush=True)
        raise SystemExit(130)

    # -- the loop's steps
    def collect(self, seed: int) -> TensorDictBase:
        """The next ``[num_envs, T]`` batch as a function of ``seed`` (:func:`~torchrl_gorl.collectors.collect_batch`)."""
        return collect_batch(self.collector, self.batches, seed, self.device, reseed_envs=self.reseed_envs)

    def start_stage(self, stage: int, hparams: dict[str, float],
                    initial_encoder: dict[str, Any] | None = None) -> None:
        """Sets the stage's PPO settings (``hparams``). At a fresh stage (not one resumed midway): loads
        ``initial_encoder`` if given, with a new optimiser (stage 0 too); otherwise the previous stage's best
        encoder goes on with the optimiser's state."""
        self.ppo.set_stage(hparams)
        if self.state.iteration > 0:  # resumed mid-stage
            return
        if initial_encoder is not None or stage == 0:
            if initial_encoder is not None:
                self.actor.load_state_dict(initial_encoder["actor"])
                self.critic.load_state_dict(initial_encoder["critic"])
            self.ppo.reset_optimizer()
        self.state.start_stage()
        self.collector.update_policy_weights_()

    def evaluate(self, stage: int, iteration: int) -> bool:
        """Deterministic evaluation; keeps the encoder if it is the stage's best (ties: the later one). Returns
        whether it reached ``target_return``: the run then ends with this encoder."""
        state, began = self.state, time.time()
        result = evaluate_policy(self.eval_env, self.policy, num_episodes=self.num_eval_episodes,
                                 seed=batch_seed(self.seed, stage, len(state.eval_rows), kind=3))
        self.add_frames("eval", result["frames"])
        p = state.progress
        row = {"stage": stage, "iteration": iteration, "frames_encoder": p["frames_encoder"],
               "frames_decoder_data": p["frames_decoder_data"], "frames_total": state.total_frames,
               "frames_eval": p["frames_eval"], **self.wall_times(began),
               **{k: v for k, v in result.items() if k != "frames"}}
        p["wall_time_eval"] += time.time() - began
        state.record_eval(row, self.actor, self.critic, target_return=self.target_return)
        self.logger.log_eval(row)
        log.info("stage %d iteration %d: eval return %.1f +- %.1f (env steps %d)",
                 stage, iteration, result["return_mean"], result["return_std"], state.total_frames)
        return state.target_reached

    def end_iteration(self, stage: int, iteration: int, data: TensorDictBase, metrics: dict[str, float],
                      hparams: dict[str, float]) -> None:
        """After a PPO iteration on ``data``: counters, metrics logged, a checkpoint every ``checkpoint_interval``
        encoder env steps, and a stop if Ctrl-C asked for one."""
        state, p = self.state, self.state.progress
        self.add_frames("encoder", data.numel())
        state.iteration = iteration + 1
        metrics = {**train_episode_metrics(data), **metrics, "stage": stage, "frames/encoder": p["frames_encoder"],
                   "frames/decoder_data": p["frames_decoder_data"], "frames/eval": p["frames_eval"],
                   "frames/total": state.total_frames, "train/clip_epsilon": hparams["clip_epsilon"],
                   "time/fps": state.total_frames / (time.time() - self.start)}
        self.logger.log(metrics, state.total_frames)
        if self.checkpoint_interval and p["frames_encoder"] - self.last_checkpoint >= self.checkpoint_interval:
            self.last_checkpoint = p["frames_encoder"]
            self.checkpoint(f"stage{stage}_iter{iteration + 1:05d}")
        self.stop_if_requested()

    def load_best_encoder(self) -> None:
        """The stage's best encoder goes on (and to the collector)."""
        self.state.load_best_encoder(self.actor, self.critic)
        self.collector.update_policy_weights_()

    def end_stage(self, stage: int, num_stages: int) -> None:
        """A checkpoint at the stage's end and the learning curve so far."""
        self.state.end_stage(num_stages)
        self.checkpoint(f"stage{stage}_end")
        self.logger.plot(self.state.eval_rows, self.title, self.state.stage_starts[1:])
        self.stop_if_requested()

    def wall_times(self, now: float) -> dict[str, float]:
        """Wall-clock seconds of the run up to ``now``: training (collection, updates, refits, checkpoints;
        resumed runs include the time before the checkpoint) and, apart, the evaluations before ``now``."""
        evaluating = self.state.progress["wall_time_eval"]
        return {"wall_time_train_s": round(now - self.start - evaluating, 3), "wall_time_eval_s": round(evaluating, 3)}

    # -- end of run
    def finish(self, *, task: str, **extra: Any) -> dict[str, Any]:
        """Evaluates the deployed policy on fresh episodes (the in-stage maximum that picked it is optimistically
        biased), shuts the collector down, writes ``summary.json`` (with ``extra``) and the final learning curve."""
        began = time.time()
        final = evaluate_policy(self.eval_env, self.policy, num_episodes=self.num_eval_episodes,
                                seed=batch_seed(self.seed, 99, 0, kind=5))
        p = self.state.progress
        p["wall_time_eval"] += time.time() - began
        self.add_frames("eval", final["frames"])
        if self.pbar is not None:
            self.pbar.close()
        self.collector.shutdown()
        self.eval_env.close()
        self.stop.restore()  # the process's handler again (a script may train more than one run)
        wall = time.time() - self.start
        total = self.state.total_frames
        summary = {
            **extra, "task": task, "seed": self.seed,
            "final_return": final["return_mean"], "final_return_std": final["return_std"],
            "best_eval_return": max(r["return_mean"] for r in self.state.eval_rows),
            "frames_encoder": p["frames_encoder"], "frames_decoder_data": p["frames_decoder_data"],
            "frames_total": total, "frames_eval": p["frames_eval"],
            "wall_time_s": wall, **self.wall_times(self.start + wall), "fps": (total + p["frames_eval"]) / wall,
            "refits": [{key: refit[key] for key in REFIT_FIELDS} for refit in p["refits"]],
        }
        self.logger.write_summary(summary)
        self.logger.plot(self.state.eval_rows, self.title, self.state.stage_starts[1:])
        log.info("done: final return %.1f (best eval %.1f), %d env steps in %.0f s",
                 summary["final_return"], summary["best_eval_return"], summary["frames_total"], wall)
        return summary
