"""GoRL's stage schedule: how many PPO iterations each stage trains, when to evaluate, which stages refit the
decoder, the per-stage PPO settings, and the seeds of each batch."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = ["StageSchedule", "batch_seed", "eval_points", "stage_value"]


def stage_value(table: Sequence[float], stage: int) -> float:
    """Entry ``stage`` of a per-stage table; the last entry repeats.

    Examples:
        >>> stage_value([0.15, 0.1], 3)
        0.1
    """
    return float(table[min(stage, len(table) - 1)])


def eval_points(num_iterations: int, num_evals: int) -> set[int]:
    """The iterations evaluated before their update, spread evenly over the stage as the reference does
    (``linspace``); the stage's last update is evaluated after it, apart.

    Examples:
        >>> sorted(eval_points(10, 4))
        [0, 3, 6, 9]
    """
    return {int(i) for i in np.linspace(0, num_iterations - 1, min(num_evals, num_iterations))}


def batch_seed(base: int, stage: int, index: int, kind: int) -> int:
    """A reproducible seed per (run seed, stage, batch, purpose), hashed so that the seed chains of different
    batches (each env of a batch gets the next seed of the chain) do not overlap.

    The purposes the scripts use: 1 encoder PPO batches, 2 decoder data, 3 evaluations, 4 decoder refits,
    5 the final evaluation, 6 the collector's one seeding when envs run on across batches.

    Examples:
        >>> batch_seed(1, 0, 0, kind=1) == batch_seed(1, 0, 0, kind=1) != batch_seed(1, 0, 1, kind=1)
        True
    """
    return int(np.random.SeedSequence([base, stage, index, kind]).generate_state(1)[0])


@dataclasses.dataclass(frozen=True)
class StageSchedule:
    """The env-step budget of a GoRL run, stage by stage.

    Stage ``k`` trains the latent encoder for ``stage_frames[k] // frames_per_iteration`` PPO iterations; each
    stage in :attr:`refit_stages` then collects ``decoder_data_iterations`` batches of decoder data and refits the
    decoder. The per-stage tables (``clip_epsilon``, ``max_grad_norm``, ``latent_prior_coeff``) repeat their last
    entry. Baselines without a decoder train one stage for the same total (:meth:`single_stage`).

    Args:
        stage_frames: encoder PPO env steps per stage.
        frames_per_iteration: env steps per PPO iteration (``num_envs x`` steps per env).
        decoder_data_iterations: batches of decoder data collected after a stage.
        refit_last_stage: whether the last stage refits the decoder too (no encoder trains against it).
        clip_epsilon, max_grad_norm, latent_prior_coeff: per-stage PPO settings.

    Examples:
        >>> schedule = StageSchedule([4000, 4000, 2000], frames_per_iteration=1000, decoder_data_iterations=2)
        >>> schedule.iterations, schedule.refit_stages, schedule.total_frames
        ([4, 4, 2], [0, 1], 14000)
        >>> schedule.hparams(2)["clip_epsilon"]
        0.1
        >>> schedule.single_stage().iterations
        [14]
    """

    stage_frames: Sequence[int]
    frames_per_iteration: int
    decoder_data_iterations: int = 0
    refit_last_stage: bool = False
    clip_epsilon: Sequence[float] = (0.15, 0.1)
    max_grad_norm: Sequence[float] = (0.5,)
    latent_prior_coeff: Sequence[float] = (5e-4,)

    def __post_init__(self) -> None:
        if self.frames_per_iteration < 1:
            raise ValueError(f"frames_per_iteration must be positive, got {self.frames_per_iteration}.")
        for i, frames in enumerate(self.stage_frames):
            if frames < self.frames_per_iteration:
                raise ValueError(f"stage_frames[{i}] = {frames} is less than one PPO iteration "
                                 f"({self.frames_per_iteration} env steps).")

    @property
    def num_stages(self) -> int:
        return len(self.stage_frames)

    @property
    def iterations(self) -> list[int]:
        """PPO iterations per stage."""
        return [frames // self.frames_per_iteration for frames in self.stage_frames]

    @property
    def refit_stages(self) -> list[int]:
        """The stages after which decoder data is collected and the decoder refit."""
        last = self.num_stages - 1
        return [k for k in range(self.num_stages) if k < last or self.refit_last_stage]

    @property
    def total_frames(self) -> int:
        """Env steps of the whole run: encoder PPO plus decoder data (evaluation not included)."""
        refits = len(self.refit_stages) * self.decoder_data_iterations
        return (sum(self.iterations) + refits) * self.frames_per_iteration

    def hparams(self, stage: int) -> dict[str, float]:
        """The PPO settings of ``stage``."""
        return {"clip_epsilon": stage_value(self.clip_epsilon, stage),
                "max_grad_norm": stage_value(self.max_grad_norm, stage),
                "latent_prior_coeff": stage_value(self.latent_prior_coeff, stage)}

    def single_stage(self) -> StageSchedule:
        """One stage with stage 0's settings and this schedule's whole budget (encoder PPO plus decoder data), no
        refit: the schedule of the baselines that train their policy directly."""
        return dataclasses.replace(self, stage_frames=[self.total_frames], decoder_data_iterations=0,
                                   refit_last_stage=False, clip_epsilon=self.clip_epsilon[:1],
                                   max_grad_norm=self.max_grad_norm[:1],
                                   latent_prior_coeff=self.latent_prior_coeff[:1])
