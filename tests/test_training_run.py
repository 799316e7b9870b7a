"""The run machinery without hydra: the stage schedule, the run state, its logger and Ctrl-C."""
import csv
import math
import os
import signal

import pytest
import torch

from torchrl_gorl.training import (batch_seed, eval_points, RunLogger, RunState, StageSchedule, stage_value,
                                   StopRequest)


# --------------------------------------------------------------------------- schedule
def test_schedule_counts_iterations_refits_and_every_env_step():
    # the 15M preset's shape: 60/60/30/30 of the budget, 8,000 env steps per iteration
    schedule = StageSchedule([4_640_000, 4_640_000, 2_320_000, 2_320_000], frames_per_iteration=8_000,
                             decoder_data_iterations=50)
    assert schedule.num_stages == 4
    assert schedule.iterations == [580, 580, 290, 290]
    assert schedule.refit_stages == [0, 1, 2]  # no encoder trains against a refit after the last stage
    assert schedule.total_frames == (580 + 580 + 290 + 290 + 3 * 50) * 8_000 == 15_120_000
    refit_last = StageSchedule([8_000] * 2, 8_000, decoder_data_iterations=1, refit_last_stage=True)
    assert refit_last.refit_stages == [0, 1] and refit_last.total_frames == 4 * 8_000


def test_single_stage_schedule_spends_the_same_budget_with_stage_0_settings():
    schedule = StageSchedule([20_000, 12_000], 4_000, decoder_data_iterations=3, clip_epsilon=[0.15, 0.1],
                             max_grad_norm=[0.5, 1.0], latent_prior_coeff=[5e-4, 1e-3])
    single = schedule.single_stage()
    assert single.iterations == [(5 + 3 + 3)] and single.refit_stages == []
    assert single.total_frames == schedule.total_frames == 44_000
    assert single.hparams(0) == schedule.hparams(0) == single.hparams(7)


def test_per_stage_tables_repeat_their_last_entry():
    schedule = StageSchedule([1000] * 4, 1000, clip_epsilon=[0.15, 0.1], max_grad_norm=[0.5],
                             latent_prior_coeff=[5e-4, 1e-3, 2e-3])
    assert [schedule.hparams(k)["clip_epsilon"] for k in range(4)] == [0.15, 0.1, 0.1, 0.1]
    assert schedule.hparams(3) == {"clip_epsilon": 0.1, "max_grad_norm": 0.5, "latent_prior_coeff": 2e-3}
    assert stage_value([3, 2, 1], 10) == 1.0


def test_schedule_refuses_a_stage_shorter_than_one_iteration():
    with pytest.raises(ValueError, match=r"stage_frames\[1\] = 500 is less than one PPO iteration \(1000"):
        StageSchedule([1000, 500], 1000)
    with pytest.raises(ValueError, match="frames_per_iteration must be positive, got 0"):
        StageSchedule([1000], 0)


def test_eval_points_spread_over_the_stage_and_batch_seeds_differ_by_every_field():
    assert eval_points(100, 5) == {0, 24, 49, 74, 99}
    assert eval_points(3, 10) == {0, 1, 2}  # never more evaluations than iterations
    seeds = {batch_seed(b, s, i, k) for b in (1, 2) for s in (0, 1) for i in (0, 1) for k in (1, 2)}
    assert len(seeds) == 16 and batch_seed(1, 0, 0, 1) == batch_seed(1, 0, 0, 1)


# --------------------------------------------------------------------------- run state
def _encoder(value: float):
    actor, critic = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    for module in (actor, critic):
        for p in module.parameters():
            p.data.fill_(value)
    return actor, critic


def test_run_state_keeps_the_stages_best_encoder_ties_to_the_later():
    state = RunState()
    actor, critic = _encoder(1.0)
    assert state.record_eval({"return_mean": 10.0}, actor, critic)
    actor.weight.data.fill_(2.0)
    assert not state.record_eval({"return_mean": 9.0}, actor, critic)
    assert state.best_encoder["actor"]["weight"].eq(1.0).all()  # a copy, not the live weights
    actor.weight.data.fill_(3.0)
    assert state.record_eval({"return_mean": 10.0}, actor, critic)  # a tie: the later encoder
    assert not state.record_eval({"return_mean": math.nan}, actor, critic)
    fresh_actor, fresh_critic = _encoder(0.0)
    state.load_best_encoder(fresh_actor, fresh_critic)
    assert fresh_actor.weight.eq(3.0).all() and fresh_critic.weight.eq(1.0).all()
    assert [row["return_mean"] for row in state.eval_rows][:3] == [10.0, 9.0, 10.0]
    state.start_stage()
    assert state.best_return == -math.inf and state.best_encoder is None
    with pytest.raises(RuntimeError, match="no best encoder"):
        state.load_best_encoder(fresh_actor, fresh_critic)


def test_run_state_counts_frames_by_kind_and_marks_stage_starts():
    state = RunState()
    state.add_frames("encoder", 800)
    state.add_frames("decoder_data", 200)
    state.add_frames("eval", 5000)
    assert state.total_frames == 1000  # evaluation is counted apart
    with pytest.raises(ValueError, match="kind must be one of .*got 'decoder'"):
        state.add_frames("decoder", 1)
    state.iteration = 7
    state.end_stage(num_stages=2)
    assert (state.stage, state.iteration, state.stage_starts) == (1, 0, [0, 1000])
    state.end_stage(num_stages=2)  # the last stage: no next start
    assert state.stage_starts == [0, 1000]


def test_run_state_round_trips_through_its_state_dict_and_target_return_ends_the_run():
    state = RunState()
    actor, critic = _encoder(1.0)
    state.add_frames("encoder", 4000)
    assert not state.target_reached
    state.record_eval({"return_mean": 401.0}, actor, critic, target_return=400)
    assert state.target_reached
    state.last_decoder = {"w": torch.ones(2)}
    again = RunState()
    again.load_state_dict(state.state_dict())
    assert again.progress == state.progress and again.target_reached
    assert again.best_encoder["critic"]["bias"].eq(1.0).all() and again.last_decoder["w"].eq(1).all()
    assert set(RunState().state_dict()) == {"progress"}  # nothing kept yet: no tensors
    with pytest.raises(ValueError, match=r"progress lacks \['eval_rows', 'frames_eval'\]"):
        RunState().load_state_dict({"progress": {"stage": 0, "iteration": 0, "frames_encoder": 0,
                                                 "frames_decoder_data": 0}})


# --------------------------------------------------------------------------- outputs
def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_eval_csv_grows_row_by_row_and_a_restart_rewrites_it_from_the_checkpoints_rows(tmp_path):
    logger = RunLogger(None, "GoRL", "cheetah-run", out=tmp_path)
    assert not (tmp_path / "eval.csv").exists()  # written at the first row, not before
    rows = [{"stage": 0, "iteration": i, "frames_total": 1000 * i, "return_mean": float(i)} for i in range(3)]
    for row in rows:
        logger.log_eval(row)
        assert len(_rows(tmp_path / "eval.csv")) == row["iteration"] + 1
    resumed = RunLogger(None, "GoRL", "cheetah-run", out=tmp_path)
    resumed.restart(rows[:2])  # the checkpoint held two rows: the third comes again
    resumed.log_eval(rows[2])
    assert [r["iteration"] for r in _rows(tmp_path / "eval.csv")] == ["0", "1", "2"]
    assert list(tmp_path.iterdir()) == [tmp_path / "eval.csv"]  # no temporary file left
    logger.plot(rows, "curve", stage_starts=[1000])
    logger.write_summary({"final_return": 2.0})
    assert (tmp_path / "learning_curve.png").stat().st_size > 0 and (tmp_path / "summary.json").exists()


def test_stop_request_takes_the_first_ctrl_c_and_lets_the_second_through():
    before = signal.getsignal(signal.SIGINT)
    stop = StopRequest()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGINT) is before


# --------------------------------------------------------------------------- a whole loop, interrupted and resumed
def _loop(tmp_path, name: str, *, stop_after: int | None = None, resume: bool = False):
    """Gaussian PPO on cartpole-balance, 2 envs x 1 episode per iteration, 3 iterations with an evaluation before the
    first and after the last, as gorl_ppo.py's stage loop. ``stop_after`` iterations: a checkpoint, then return."""
    import functools

    from torchrl_gorl import make_latent_actor, make_latent_ppo_loss, make_value_network
    from torchrl_gorl.collectors import make_collector
    from torchrl_gorl.envs import make_env
    from torchrl_gorl.training import load_checkpoint, PPOUpdate, TrainingRun

    torch.manual_seed(0)
    actor = make_latent_actor(5, 1, num_cells=(16,), latent_key="action")
    critic = make_value_network(5, num_cells=(16,))
    ppo = PPOUpdate(actor, critic, make_latent_ppo_loss(actor, critic, clip_epsilon=0.2), gamma=0.99, epochs=2,
                    minibatch_size=500)
    collector = make_collector(functools.partial(make_env, "cartpole-balance", backend="batched"), actor,
                               num_envs=2, frames_per_batch=2000)
    out = tmp_path / name
    out.mkdir(exist_ok=True)
    run = TrainingRun(policy=actor, actor=actor, critic=critic, ppo=ppo, collector=collector,
                      eval_env=make_env("cartpole-balance", 2, backend="batched"),
                      logger=RunLogger(None, "PPO", "cartpole", out=out), seed=1, num_eval_episodes=2,
                      checkpoint_dir=out / "checkpoints", config={"task": "cartpole-balance"})
    if resume:
        run.restore(load_checkpoint(out / "checkpoints"))
    hparams = {"clip_epsilon": 0.2, "max_grad_norm": 0.5, "latent_prior_coeff": 0.0}
    run.start_stage(0, hparams)
    for iteration in range(run.state.iteration, 3):
        if iteration == 0:
            run.evaluate(0, iteration)
        if iteration == stop_after:
            run.checkpoint("stop")
            run.collector.shutdown()
            run.stop.restore()
            return None
        data = run.collect(batch_seed(1, 0, iteration, kind=1))
        metrics = ppo.update(data)
        collector.update_policy_weights_()
        run.end_iteration(0, iteration, data, metrics, hparams)
    run.evaluate(0, 3)
    run.load_best_encoder()
    run.end_stage(0, 1)
    return run.finish(task="cartpole-balance", algorithm="ppo")


def test_a_loop_on_the_training_run_resumes_exactly_from_its_checkpoint(tmp_path):
    whole = _loop(tmp_path, "whole")
    assert _loop(tmp_path, "resumed", stop_after=2) is None
    resumed = _loop(tmp_path, "resumed", resume=True)
    skip = ("wall_time_s", "wall_time_train_s", "wall_time_eval_s", "fps")
    assert {k: v for k, v in resumed.items() if k not in skip} == {k: v for k, v in whole.items() if k not in skip}
    assert whole["frames_total"] == 3 * 2000 and whole["frames_eval"] == 3 * 2 * 1000
    columns = slice(0, 6)
    lines = [(tmp_path / name / "eval.csv").read_text().splitlines() for name in ("whole", "resumed")]
    assert [line.split(",")[columns] for line in lines[0]] == [line.split(",")[columns] for line in lines[1]]
    assert [r.split(",")[8] for r in lines[0][1:]] == [r.split(",")[8] for r in lines[1][1:]]  # the returns


def test_decoder_rows_flatten_the_batch_and_standardise_the_advantage():
    from tensordict import TensorDict

    from torchrl_gorl.training import decoder_rows, TRANSITION_KEYS

    data = TensorDict({"observation": torch.randn(4, 5, 3), "action": torch.randn(4, 5, 2), "sample_log_prob":
                       torch.zeros(4, 5), "next": {"observation": torch.randn(4, 5, 3), "reward": torch.randn(4, 5, 1),
                                                   "done": torch.zeros(4, 5, 1, dtype=torch.bool),
                                                   "terminated": torch.zeros(4, 5, 1, dtype=torch.bool)}}, [4, 5])
    rows = decoder_rows(data)
    assert rows.batch_size == (20,) and set(rows.keys()) == {"observation", "action"}
    assert torch.equal(rows["action"], data["action"].reshape(20, 2))  # env-major, as reshape(-1)
    advantage = torch.linspace(-3.0, 9.0, 20).view(4, 5, 1)
    weighted = decoder_rows(data, advantage=advantage)
    assert abs(weighted["advantage"].mean().item()) < 1e-6 and abs(weighted["advantage"].std().item() - 1) < 1e-5
    assert torch.equal(weighted["advantage"].argsort(0), advantage.reshape(20, 1).argsort(0))  # order kept
    constant = decoder_rows(data, advantage=torch.full((4, 5, 1), 2.0))["advantage"]
    assert torch.isfinite(constant).all() and torch.equal(constant, torch.zeros(20, 1))  # no division by zero
    saved = decoder_rows(data, transitions=True)
    assert all(key in saved.keys(True) for key in TRANSITION_KEYS) and "sample_log_prob" not in saved.keys()


def test_evaluate_policy_scores_the_deterministic_policy_unless_asked_for_the_stochastic_one():
    from torchrl.envs.utils import ExplorationType

    from torchrl_gorl import FlowDecoderModule, make_gorl_policy, make_latent_actor
    from torchrl_gorl.envs import make_env
    from torchrl_gorl.training import evaluate_policy

    env = make_env("cartpole-balance", 2, seed=0)
    actor = make_latent_actor(5, 1, num_cells=(8,))
    policy = make_gorl_policy(actor, FlowDecoderModule.identity(5, 1))

    def score(exploration_type, torch_seed):
        torch.manual_seed(torch_seed)
        return evaluate_policy(env, policy, num_episodes=2, max_steps=100, seed=3,
                               exploration_type=exploration_type)["return_mean"]

    deterministic = score(ExplorationType.DETERMINISTIC, 0)
    assert deterministic == score(ExplorationType.DETERMINISTIC, 1)  # the latent mean: no sampling
    assert score(ExplorationType.RANDOM, 0) == score(ExplorationType.RANDOM, 0)  # repeatable when seeded
    assert score(ExplorationType.RANDOM, 0) != deterministic and score(ExplorationType.RANDOM, 1) != score(
        ExplorationType.RANDOM, 0)  # sampled latents
    env.close()


def test_refit_on_clamped_actions_fits_the_clamped_targets_and_leaves_the_data_alone():
    from tensordict import TensorDict

    from torchrl_gorl import FlowDecoderModule, FlowMatchingLoss
    from torchrl_gorl.training import refit_decoder

    torch.manual_seed(0)
    n = 512
    action = torch.cat([torch.full((n // 2, 2), 12.0), torch.full((n // 2, 2), -12.0)]) + 0.01 * torch.randn(n, 2)
    data = TensorDict(observation=torch.zeros(n, 3), action=action, batch_size=[n])
    before = data["action"].clone()
    losses = {}
    for clip, targets in ((3.0, data), (None, data.clone().set("action", data["action"].clamp(-3.0, 3.0)))):
        torch.manual_seed(1)
        decoder = FlowDecoderModule(3, 2, num_cells=(32,))
        losses[clip] = refit_decoder(FlowMatchingLoss(decoder), targets, batch_size=128, max_epochs=2, patience=2,
                                     action_clip=clip, seed=0).val_losses
    assert losses[3.0] == losses[None]  # the same fit as on pre-clamped data, bit for bit
    assert torch.equal(data["action"], before)  # the caller's rows keep their actions
    with pytest.raises(ValueError, match=r"action_clip must be positive or None, got -1\.0"):
        refit_decoder(FlowMatchingLoss(FlowDecoderModule(3, 2)), data, action_clip=-1.0)
