"""The training pipeline: a complete two-stage smoke run, exact resume, and start-up config errors."""
import json
import math
import pathlib
import subprocess
import sys

import pytest
from torchrl_gorl.collectors import collect_batch
import torch
from hydra import compose, initialize_config_dir

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOTA = ROOT / "sota-implementations"
sys.path.insert(0, str(SOTA))

import utils_gorl  # noqa: E402
from torchrl.checkpoint import Checkpoint  # noqa: E402

from torchrl_gorl import config_readers  # noqa: E402
from torchrl_gorl.config_readers import check_resume_compatible  # noqa: E402
from torchrl_gorl.configs import validate_config  # noqa: E402
from torchrl_gorl.training import clip_and_adam_, load_checkpoint  # noqa: E402


def _checkpoint(run_dir: pathlib.Path, name: str) -> pathlib.Path:
    """The checkpoint a run wrote under ``name`` (its manifest's metadata: ``stage0_iter00001``, ``stage1_end``)."""
    for path in sorted((run_dir / "checkpoints").glob("checkpoint-*.torchrl")):
        if Checkpoint.manifest(path)["metadata"]["name"] == name:
            return path
    raise FileNotFoundError(f"no checkpoint {name!r} in {run_dir / 'checkpoints'}")


def _load(run_dir: pathlib.Path, name: str) -> dict:
    return load_checkpoint(_checkpoint(run_dir, name))


def _run(script: str, run_dir: pathlib.Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SOTA / script), "preset=smoke", f"hydra.run.dir={run_dir}", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoke")
    result = _run("gorl_ppo.py", run_dir, "checkpoint.keep_all=true", "checkpoint.interval_frames=2000")
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir


def test_gorl_stage_zero_is_exactly_gaussian_ppo(smoke_run, tmp_path):
    """With the identity decoder, GoRL's stage 0 and the Gaussian baseline train the same policy."""
    # wandb (offline) here and csv for GoRL: the logging backend must not change the results
    result = _run("ppo_gaussian.py", tmp_path, "logger.backend=wandb", "logger.wandb_mode=offline")
    assert result.returncode == 0, result.stderr[-4000:]
    assert list((tmp_path / "logs" / "wandb").glob("offline-run-*"))
    gorl = _eval_rows(smoke_run)[:3]  # stage 0's three evaluations
    gaussian = _eval_rows(tmp_path)[:3]
    assert [_without_wall_times(r) for r in gorl] == [_without_wall_times(r) for r in gaussian]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames_total"] == summary["frames_encoder"] == 10000  # GoRL's whole budget
    assert summary["frames_decoder_data"] == 0


def _eval_rows(run_dir: pathlib.Path) -> list[dict[str, str]]:
    import csv

    with open(run_dir / "eval.csv") as f:
        return list(csv.DictReader(f))


def _without_wall_times(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("wall_time")}


def test_eval_rows_carry_training_and_evaluation_wall_time(smoke_run):
    """Time-to-score can be read off any run: each evaluation row has the training wall time before it, with
    the evaluations' own time counted apart; the summary splits the whole run the same way."""
    rows = _eval_rows(smoke_run)
    train = [float(r["wall_time_train_s"]) for r in rows]
    evaluating = [float(r["wall_time_eval_s"]) for r in rows]
    assert evaluating[0] == 0 and all(b > a for a, b in zip(evaluating, evaluating[1:]))  # every eval takes time
    assert all(b > a for a, b in zip(train, train[1:])) and train[0] < train[1]  # PPO iterations between evals
    summary = json.loads((smoke_run / "summary.json").read_text())
    assert summary["wall_time_train_s"] + summary["wall_time_eval_s"] == pytest.approx(summary["wall_time_s"], abs=0.01)
    assert summary["wall_time_train_s"] > train[-1] and summary["wall_time_eval_s"] > evaluating[-1]


def _compose(*overrides: str, config: str = "gorl_ppo"):
    with initialize_config_dir(config_dir=str(SOTA / "config"), version_base="1.3"):
        return compose(config_name=config, overrides=list(overrides))


def test_smoke_run_trains_two_complete_stages(smoke_run):
    summary = json.loads((smoke_run / "summary.json").read_text())
    # 2 stages x 2 iterations x (2 envs x 1000 steps), plus one PPO iteration's worth of decoder data
    assert summary["frames_encoder"] == 8000 and summary["frames_decoder_data"] == 2000
    assert summary["frames_total"] == 10000
    assert summary["frames_eval"] == 7 * 2000  # 3 evals per stage + the final evaluation
    assert len(summary["refits"]) == 1 and summary["refits"][0]["rows"] == 2000
    rows = (smoke_run / "eval.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 6
    assert (smoke_run / "learning_curve.png").stat().st_size > 1000
    ckpt = _load(smoke_run, "stage1_end")
    assert ckpt["progress"]["stage"] == 2
    # the stage-1 policy ran on the refit decoder, not the identity
    decoder = utils_gorl.make_decoder(utils_gorl.OmegaConf.create(ckpt["config"]), 17, 6, "cpu")
    decoder.load_state_dict(ckpt["decoder"])
    z = torch.randn(8, 6)
    assert not torch.equal(decoder.decode(torch.randn(8, 17), z), z)


def test_finetuned_last_stage_refit_is_kept_but_not_deployed(tmp_path):
    """With decoder_init=finetune the refit trains a copy: the last stage's refit must not replace the decoder
    that the last encoder was trained (and is evaluated) with."""
    result = _run("gorl_ppo.py", tmp_path, "schedule.decoder_init=finetune", "schedule.refit_last_stage=true",
                  "checkpoint.keep_all=true", "eval.num_evals=1")
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [r["stage"] for r in summary["refits"]] == [0, 1]
    stage0, final = (_load(tmp_path, f"stage{k}_end") for k in (0, 1))
    # the deployed decoder is still stage 0's refit ...
    torch.testing.assert_close(final["decoder"], stage0["decoder"], rtol=0, atol=0)
    # ... and the last refit, fine-tuned from it, is saved beside it
    last = final["last_decoder"]
    assert any(not torch.equal(last[k], v) for k, v in stage0["decoder"].items() if k.startswith("network."))


def _assert_same_run(uninterrupted: dict, resumed: dict) -> None:
    """Two end-of-run checkpoints hold the same parameters and evaluation history (wall times aside)."""
    for part in ("actor", "critic", "decoder"):
        for key, value in uninterrupted[part].items():
            other = resumed[part][key]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other, (part, key)
    assert [_without_wall_times(r) for r in uninterrupted["progress"]["eval_rows"]] == [
        _without_wall_times(r) for r in resumed["progress"]["eval_rows"]]


def test_resume_ends_where_the_uninterrupted_run_does(smoke_run, tmp_path):
    mid = _checkpoint(smoke_run, "stage0_iter00001")  # after stage 0's first PPO iteration
    assert load_checkpoint(mid)["progress"]["iteration"] == 1
    result = _run("gorl_ppo.py", tmp_path, f"checkpoint.resume={mid}", "checkpoint.keep_all=true")
    assert result.returncode == 0, result.stderr[-4000:]
    uninterrupted = _load(smoke_run, "stage1_end")
    resumed = _load(tmp_path, "stage1_end")
    _assert_same_run(uninterrupted, resumed)
    # the resumed run's clock goes on from the checkpoint's: its training time passes the checkpoint's
    assert resumed["progress"]["eval_rows"][2]["wall_time_train_s"] > load_checkpoint(mid)["progress"]["eval_rows"][0]["wall_time_train_s"]


# the compiled policy and the one-graph update (inductor, whose random ops draw their seeds from torch's generator)
# are the default preset's; the eager path (the cpu and paper presets') and the compiled policy with the eager update
# run the same resume machinery and are slow-marked to keep the default suite near 8 minutes
@pytest.mark.parametrize("compiled", [pytest.param([], marks=pytest.mark.slow),
                                      pytest.param(["collector.compile_policy=true"], marks=pytest.mark.slow),
                                      ["collector.compile_policy=true", "ppo.compile_step=true"]],
                         ids=["eager", "compiled_policy", "compiled_policy_and_step"])
def test_unrolled_resume_with_two_workers_is_exact(tmp_path, compiled):
    """Running envs in 2 collector processes: a run resumed mid-stage (mid-episode) ends bit-identical to the
    uninterrupted run, because the checkpoint carries each worker's physics, task RNG, carried observations and
    sampling RNG. Also with the workers' policy compiled (``POLICY_COMPILE``) and the one-graph update
    (``ppo.compile_step``), as in the default preset."""
    # two 1,000-step iterations per stage, one evaluation before the last: the shortest run that resumes mid-stage
    unrolled = ["collector.num_workers=2", "collector.num_envs=4", "collector.unroll_length=250",
                "schedule.stage_frames=[2000,2000]", "eval.num_evals=1", *compiled]
    full = tmp_path / "full"
    result = _run("gorl_ppo.py", full, *unrolled, "checkpoint.keep_all=true", "checkpoint.interval_frames=1000")
    assert result.returncode == 0, result.stderr[-4000:]
    mid = _checkpoint(full, "stage0_iter00001")
    saved = load_checkpoint(mid)
    assert saved["progress"]["iteration"] == 1  # of 2
    carried = torch.cat([saved["collector"][f"worker{w}"]["carrier"]["step_count"] for w in range(2)]).flatten()
    assert len(set(carried.tolist())) == 4 and carried.min() > 0  # staggered episodes, all under way
    resumed_dir = tmp_path / "resumed"
    result = _run("gorl_ppo.py", resumed_dir, *unrolled, f"checkpoint.resume={mid}", "checkpoint.keep_all=true")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "does not repeat the uninterrupted run" not in result.stderr
    uninterrupted = _load(full, "stage1_end")
    resumed = _load(resumed_dir, "stage1_end")
    _assert_same_run(uninterrupted, resumed)
    for w in range(2):  # the envs end in the same state too
        ours, theirs = (c["collector"][f"worker{w}"] for c in (uninterrupted, resumed))
        assert ours["env_runtime"].keys() == theirs["env_runtime"].keys()
        assert all(torch.equal(value, theirs["env_runtime"][key]) for key, value in ours["env_runtime"].items())
        assert torch.equal(ours["torch_rng"], theirs["torch_rng"])


def test_compile_step_is_refused_for_other_losses():
    """FPO and DPPO bring their own ``ClipPPOLoss`` subclasses: the one-graph step is refused before any compute."""
    cfg = _compose("preset=smoke", "ppo.compile_step=true")  # its start-up check: tests/test_configs.py
    torch.manual_seed(0)
    actor, critic, norm = utils_gorl.make_encoder(cfg, 17, 6, "cpu")
    loss = utils_gorl.make_latent_ppo_loss(actor, critic)  # any loss passed in: what fpo.py and dppo.py do
    with pytest.raises(ValueError, match="ppo.compile_step=true supports the latent PPO loss"):
        utils_gorl.make_ppo_update(cfg, actor, critic, 0.99, torch.device("cpu"), norm, loss=loss)


def test_compiled_update_matches_eager():
    """``ppo.compile``: the compiled minibatch losses (aot_eager here: the same graph capture and autograd as
    inductor, without its C++ build) give the eager losses and gradients, and the compiled update trains.

    Whole updates are not compared: Adam's first steps are about ``lr * sign(grad)``, so float-level gradient
    differences on near-zero components move weights by ``lr``."""
    batch = _unrolled_batches(1)[0]
    cfg = _compose("preset=smoke", "collector.unroll_length=400", "ppo.compile=true", "ppo.compile_backend=aot_eager")
    validate_config(cfg)
    torch.manual_seed(0)
    actor, critic, norm = utils_gorl.make_encoder(cfg, 17, 6, "cpu")
    ppo = utils_gorl.make_ppo_update(cfg, actor, critic, 0.99, torch.device("cpu"), norm)
    assert ppo.minibatch_losses != ppo._minibatch_losses
    minibatch = ppo.gae_(batch.clone()).reshape(-1)[:200]
    results = []
    for losses_of in (ppo._minibatch_losses, ppo.minibatch_losses):
        losses, metrics = losses_of(minibatch.clone())
        grads = torch.autograd.grad(sum(losses.values()), ppo.params)
        results.append(({**losses, **metrics}, grads))
    (eager, eager_grads), (compiled, compiled_grads) = results
    assert eager.keys() == compiled.keys() and "loss_latent_prior" in eager
    for key in eager:
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-5, atol=1e-7)
    for ours, theirs in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-7)
    initial = [p.detach().clone() for p in ppo.params]
    metrics = ppo.update(batch.clone())
    assert not any(torch.equal(a, b) for a, b in zip(initial, ppo.params))  # every tensor trained
    assert "train/loss_latent_prior" in metrics and all(math.isfinite(v) for v in metrics.values())
    # a new tensorclass grows tensordict's memo (the refit does, at stage 1): the update must not recompile
    from tensordict import tensorclass

    @tensorclass
    class Unrelated:
        x: torch.Tensor

    Unrelated(x=torch.zeros(1), batch_size=[1]).clone()
    with torch._dynamo.config.patch(error_on_recompile=True):
        ppo.update(batch.clone())
    # the guard filter keeps the guards on the minibatch's tensors: another shape is not run on a graph of 200 rows
    with torch._dynamo.config.patch(error_on_recompile=True), pytest.raises(torch._dynamo.exc.RecompileError):
        ppo.minibatch_losses(minibatch[:37].clone())
    # it drops those on the loss modules: a second PPOUpdate in the process (a hydra multirun) with the other
    # normalize_advantage compiles its own graph instead of running the first one's
    normalize = not cfg.ppo.normalize_advantage
    other_cfg = _compose("preset=smoke", "collector.unroll_length=400", "ppo.compile=true", "ppo.compile_backend=aot_eager",
                         f"ppo.normalize_advantage={str(normalize).lower()}")
    other = utils_gorl.make_ppo_update(other_cfg, actor, critic, 0.99, torch.device("cpu"), norm)
    first = ppo._minibatch_losses(minibatch.clone())[0]["loss_objective"]
    eager = other._minibatch_losses(minibatch.clone())[0]["loss_objective"]
    torch.testing.assert_close(other.minibatch_losses(minibatch.clone())[0]["loss_objective"], eager, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(eager, first, atol=1e-4)  # normalised advantages: another objective


def test_one_graph_step_is_the_standard_step():
    """``ppo.compile_step``: the losses, their gradients through TorchRL's losses (``torch.func``), the clip and Adam
    in one compiled graph (aot_eager here: inductor's capture without its C++ build; ``ppo.compile`` on too, as in
    the default preset, where the step supersedes it) give the standard step's
    losses, gradient norm, Adam moments and weights, in the optimiser's own state (checkpoints), without recompiling
    across updates or stages."""
    batch = _unrolled_batches(1)[0]
    configs = [_compose("preset=smoke", "collector.unroll_length=400", *extra)
               for extra in ([], ["ppo.compile_step=true", "ppo.compile=true", "ppo.compile_backend=aot_eager"])]
    updates = []
    for cfg in configs:
        validate_config(cfg)
        torch.manual_seed(0)
        actor, critic, norm = utils_gorl.make_encoder(cfg, 17, 6, "cpu")
        updates.append(utils_gorl.make_ppo_update(cfg, actor, critic, 0.99, torch.device("cpu"), norm))
    standard, one_graph = updates
    assert standard.one_graph_step is None and one_graph.one_graph_step is not None
    assert one_graph.minibatch_losses == one_graph._minibatch_losses  # the step supersedes ppo.compile's losses
    assert not one_graph.loss.functional and not one_graph.prior.functional  # functional_call reaches them
    minibatch = standard.gae_(batch.clone()).reshape(-1)[:200]
    losses, metrics = standard._minibatch_losses(minibatch.clone())
    metrics["grad_norm"] = standard.step(sum(losses.values()))
    grads = [p.grad.clone() for p in standard.params]
    weights = {name: p.detach() for name, p in one_graph.networks.named_parameters()}
    ours = one_graph.one_graph_step(weights, one_graph._adam_moments(), minibatch.to_dict(), minibatch.batch_size,
                                    one_graph.max_grad_norm_tensor)
    ours = {**ours[0], **ours[1]}
    assert ours.keys() == {**losses, **metrics}.keys() and "loss_latent_prior" in ours
    for key, value in {**losses, **metrics}.items():
        torch.testing.assert_close(ours[key], value, rtol=1e-5, atol=1e-7)
    for p, q, grad in zip(standard.params, one_graph.params, grads):
        theirs, mine = standard.optimizer.state[p], one_graph.optimizer.state[q]
        assert float(mine["step"]) == float(theirs["step"]) == 1.0
        torch.testing.assert_close(mine["exp_avg"], theirs["exp_avg"], rtol=1e-4, atol=1e-9)
        torch.testing.assert_close(mine["exp_avg_sq"], theirs["exp_avg_sq"], rtol=1e-4, atol=1e-12)
        # Adam's first step is about lr * sign(grad): compared where the gradient's sign is not float noise
        clear = grad.abs() > 1e-6
        torch.testing.assert_close(q.detach()[clear], p.detach()[clear], rtol=1e-6, atol=1e-7)
    assert one_graph.state_dict()["optimizer"]["state"][0]["step"] == 1.0
    one_graph.update(batch.clone())  # compiles the update's loop once more around the same graph
    one_graph.set_stage({"clip_epsilon": 0.3, "latent_prior_coeff": 1e-3, "max_grad_norm": 1.0})
    with torch._dynamo.config.patch(error_on_recompile=True):
        metrics = one_graph.update(batch.clone())
    assert all(math.isfinite(v) for v in metrics.values())
    one_graph.reset_optimizer()  # every stage: a fresh Adam, whose state the next update creates, same graph
    with torch._dynamo.config.patch(error_on_recompile=True):
        one_graph.update(batch.clone())
    ppo_cfg = configs[1].ppo
    assert float(one_graph.optimizer.state[one_graph.params[0]]["step"]) == ppo_cfg.epochs * ppo_cfg.num_minibatches


@pytest.mark.parametrize("max_grad_norm", [0.05, math.inf], ids=["clipped", "unclipped"])
def test_clip_and_adam_is_torchs_clip_and_adam(max_grad_norm):
    """The one-graph step's clip and Adam (``clip_and_adam_``) against ``clip_grad_norm_`` and ``torch.optim.Adam``
    over several steps (the moments' decay shows from the second), in the optimiser's own state."""
    torch.manual_seed(0)
    shapes = {"a.weight": (32, 17), "a.bias": (32,), "b.weight": (1, 32)}
    ours = {name: torch.randn(shape) for name, shape in shapes.items()}
    theirs = [torch.nn.Parameter(w.clone()) for w in ours.values()]
    adam = torch.optim.Adam(theirs, lr=1e-3, foreach=False, fused=False)
    moments = {name: (torch.tensor(0.0), torch.zeros(shape), torch.zeros(shape)) for name, shape in shapes.items()}
    for _ in range(5):
        grads = {name: torch.randn(shape) for name, shape in shapes.items()}
        for p, g in zip(theirs, grads.values()):
            p.grad = g.clone()
        norm = torch.nn.utils.clip_grad_norm_(theirs, max_grad_norm)
        adam.step()
        our_norm = clip_and_adam_(ours, grads, moments, torch.tensor(max_grad_norm), 1e-3, (0.9, 0.999), 1e-8)
        torch.testing.assert_close(our_norm, norm)
    if max_grad_norm < 1:
        assert norm > max_grad_norm  # the clip was at work
    for (name, weight), p in zip(ours.items(), theirs):
        state = adam.state[p]
        torch.testing.assert_close(weight, p.detach(), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(moments[name][1], state["exp_avg"], rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(moments[name][2], state["exp_avg_sq"], rtol=1e-6, atol=1e-12)
        assert float(moments[name][0]) == float(state["step"]) == 5.0


@pytest.mark.slow
def test_gorl_trains_with_the_one_graph_step(tmp_path):
    """A smoke run of gorl_ppo.py with ``ppo.compile_step`` (aot_eager: no C++ build) trains through both stages (a
    fresh optimiser at the second) and evaluates (the step itself: ``test_one_graph_step_is_the_standard_step``)."""
    result = _run("gorl_ppo.py", tmp_path, "ppo.compile_step=true", "ppo.compile_backend=aot_eager")
    assert result.returncode == 0, result.stderr[-4000:]
    rows = _eval_rows(tmp_path)
    assert {row["stage"] for row in rows} == {"0", "1"} and all(math.isfinite(float(r["return_mean"])) for r in rows)


def test_minibatches_replay_torchrl_samplers_stream_and_gather_the_loss_keys_only():
    """PPOUpdate indexes its minibatches itself, with the permutations TorchRL's ``SamplerWithoutReplacement`` draws
    from the same RNG stream (so runs of the replay-buffer version replay bit for bit): every row once per epoch, the
    next permutation drawn ahead and kept in the state."""
    from tensordict import TensorDict
    from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
    from torchrl.data.replay_buffers import SamplerWithoutReplacement

    cfg = _compose("preset=smoke")
    torch.manual_seed(0)
    actor, critic, norm = utils_gorl.make_encoder(cfg, 17, 6, "cpu")
    ppo, other = (utils_gorl.make_ppo_update(cfg, actor, critic, 0.99, torch.device("cpu"), norm) for _ in range(2))
    rows, minibatches = config_readers.frames_per_iteration(cfg), cfg.ppo.num_minibatches
    buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(rows), sampler=SamplerWithoutReplacement(),
                                    batch_size=rows // minibatches)
    torch.manual_seed(1)
    expected = []
    for _ in range(3):
        buffer.extend(TensorDict({"row": torch.arange(rows)}, [rows]))
        expected += [batch["row"] for batch in buffer]
        torch.rand(3)  # the update's own draws between epochs
    torch.manual_seed(1)
    ours = []
    for _ in range(3):
        ours += [batch["row"] for batch in ppo.minibatches(TensorDict({"row": torch.arange(rows)}, [rows]))]
        torch.rand(3)
    assert len(ours) == len(expected) == 3 * minibatches
    assert all(torch.equal(a, b) for a, b in zip(ours, expected))
    for epoch in range(3):
        assert torch.equal(torch.cat(ours[epoch * minibatches:(epoch + 1) * minibatches]).sort().values, torch.arange(rows))
    state = ppo.state_dict()
    assert torch.equal(state["permutation"], buffer.sampler.state_dict()["_sample_list"])
    other.load_state_dict(state)
    assert torch.equal(other.permutation, ppo.permutation)
    # a smaller batch (a warm-up slice) gets fewer minibatches of the same size, as from the replay buffer
    half = TensorDict({"row": torch.arange(rows // 2)}, [rows // 2])
    assert [batch.numel() for batch in other.minibatches(half)] == [rows // minibatches] * (minibatches // 2)
    # the minibatches carry what the losses read, not the collector's bookkeeping
    assert {"observation", "latent", "latent_log_prob", "advantage", "value_target"} <= set(ppo.minibatch_keys)
    assert not {"step_count", ("collector", "traj_ids"), "episode_reward"} & set(ppo.minibatch_keys)


def test_target_return_ends_the_run_at_the_first_evaluation_that_reaches_it(tmp_path):
    result = _run("gorl_ppo.py", tmp_path, "eval.target_return=-1000")
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = (tmp_path / "eval.csv").read_text().strip().splitlines()
    assert len(rows) == 2  # header + the evaluation before the first update, which reaches -1000
    assert summary["frames_encoder"] == 0 and summary["refits"] == []


def test_accepts_paper_task_names():
    assert config_readers.resolve_gamma(_compose("env.task=FingerSpin")) == 0.95
    assert config_readers.stage_hparams(_compose("env.task=BallInCup"), 0)["latent_prior_coeff"] == 0.0
    assert config_readers.stage_hparams(_compose("env.task=BallInCup"), 3) == {
        "clip_epsilon": 0.3, "max_grad_norm": 1.0, "latent_prior_coeff": 1e-3
    }


def test_default_command_runs_the_cpu_fast_preset():
    """The README's main command (no overrides) is the 2-core preset of docs/performance.md: 32 envs in 2
    collector processes, 250-step unrolls, a compiled collection policy, 16 minibatches each one compiled step, a
    2 x 256 critic (the preset's documented choice), 3.02M env steps; the earlier full-episode configuration stays
    selectable as ``preset=cpu``, with the reference's critic; ``preset=paper`` keeps the reference's critic too.
    fpo.py and dppo.py under the preset keep the compiled losses (the one-graph step is the latent PPO loss's)."""
    cfg = _compose()
    validate_config(cfg)
    assert (cfg.collector.num_envs, cfg.collector.num_workers, cfg.collector.unroll_length) == (32, 2, 250)
    assert cfg.ppo.num_minibatches == 16 and cfg.ppo.compile_step is True and cfg.collector.compile_policy is True
    assert list(cfg.encoder.critic_num_cells) == [256, 256]
    gaussian = _compose(config="ppo_gaussian")
    validate_config(gaussian, method="ppo_gaussian")
    assert gaussian.ppo.compile_step is True
    for method in ("fpo", "dppo"):
        baseline = _compose(config=method)
        validate_config(baseline, method=method)
        assert baseline.ppo.compile is True and baseline.ppo.compile_step is False
    for preset in ("cpu", "paper"):
        reference = _compose(f"preset={preset}")
        assert list(reference.encoder.critic_num_cells) == [256] * 5 and reference.collector.compile_policy is False
        assert reference.ppo.compile is False and reference.ppo.compile_step is False
    assert config_readers.frames_per_iteration(cfg) == 8_000
    assert sum(cfg.schedule.stage_frames) == 2_784_000  # encoder PPO; + 3 refits x 10 iterations of decoder data = 3.02M
    assert 3 * cfg.schedule.decoder_data_iterations * config_readers.frames_per_iteration(cfg) == 240_000
    old = _compose("preset=cpu")
    validate_config(old)
    assert old.collector.unroll_length is None and old.collector.num_envs == 8 and old.ppo.compile is False


def test_15m_preset_is_the_default_loop_with_every_budget_times_five(tmp_path):
    """``preset=cpu_fast_15m`` (the hopper-stand comparison, docs/results.md): the default preset's collection and
    update, the reference's 2:2:1:1 stage split, at least 15M env steps counting decoder data, and Gaussian PPO at
    the same total, all of it PPO. A few iterations of it run end to end."""
    cfg, default = _compose("preset=cpu_fast_15m", "env.task=hopper-stand"), _compose("env.task=hopper-stand")
    validate_config(cfg)
    for group in ("env", "encoder", "decoder", "ppo", "collector", "refit"):
        assert cfg[group] == default[group], group
    per_iteration = config_readers.frames_per_iteration(cfg)
    assert all(frames % per_iteration == 0 for frames in cfg.schedule.stage_frames)
    assert [f // cfg.schedule.stage_frames[-1] for f in cfg.schedule.stage_frames] == [2, 2, 1, 1]
    total = config_readers.make_schedule(cfg).total_frames
    assert total == 5 * config_readers.make_schedule(default).total_frames == 15_120_000
    gaussian = _compose("preset=cpu_fast_15m", "env.task=hopper-stand", config="ppo_gaussian")
    validate_config(gaussian, method="ppo_gaussian")
    assert config_readers.make_schedule(gaussian).total_frames // per_iteration * per_iteration == total
    assert cfg.eval.num_evals * cfg.schedule.num_stages == 40
    # a few iterations of it: one per stage (8,000 env steps each), eager, short evaluations
    cmd = [sys.executable, str(SOTA / "gorl_ppo.py"), "preset=cpu_fast_15m", "env.task=hopper-stand",
           f"hydra.run.dir={tmp_path}", "schedule.stage_frames=[8000,8000,8000,8000]",
           "schedule.decoder_data_iterations=1", "eval.num_episodes=1", "eval.num_envs=1", "eval.num_evals=1",
           "ppo.compile_step=false", "ppo.compile=false", "collector.compile_policy=false",
           "logger.progress_bar=false"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["task"] == "hopper-stand" and summary["frames_total"] == 4 * 8_000 + 3 * 8_000
    assert [refit["stage"] for refit in summary["refits"]] == [0, 1, 2]


def test_resume_with_another_architecture_fails(smoke_run):
    saved = _load(smoke_run, "stage1_end")
    with pytest.raises(ValueError, match="decoder.type = 'diffusion' does not match"):
        check_resume_compatible(_compose("preset=smoke", "decoder.type=diffusion"), saved["config"])
    with pytest.raises(ValueError, match="ppo.gae_lambda = 0.9 does not match"):  # any setting, not only sizes
        check_resume_compatible(_compose("preset=smoke", "ppo.gae_lambda=0.9"), saved["config"])
    # logging, checkpointing, device and threads may change
    same = _compose("preset=smoke", "checkpoint.keep_all=true", "checkpoint.interval_frames=2000", "logger.backend=wandb")
    check_resume_compatible(same, saved["config"])


def test_script_refuses_to_resume_with_other_settings(smoke_run, tmp_path):
    ckpt = _checkpoint(smoke_run, "stage0_iter00001")
    result = _run("gorl_ppo.py", tmp_path, f"checkpoint.resume={ckpt}", "ppo.gae_lambda=0.9")
    assert result.returncode != 0
    assert "config key ppo.gae_lambda = 0.9 does not match the resumed checkpoint's 0.95" in result.stderr


def test_resume_from_a_missing_checkpoint_names_the_key(tmp_path):
    result = _run("gorl_ppo.py", tmp_path, "checkpoint.resume=nowhere/latest.pt")
    assert result.returncode != 0 and "config key checkpoint.resume: no checkpoint at" in result.stderr


def test_script_reports_bad_config_before_any_compute(tmp_path):
    result = _run("gorl_ppo.py", tmp_path, "env.task=cheetah-walk")
    assert result.returncode != 0
    assert "config key env.task: unknown task 'cheetah-walk'" in result.stderr
    assert not (tmp_path / "checkpoints").exists()


def _unrolled_batches(num_batches: int, *overrides: str, stagger: bool = False):
    from torchrl_gorl import make_gorl_policy

    cfg = _compose("preset=smoke", "collector.unroll_length=400", f"collector.stagger_episodes={str(stagger).lower()}",
                   *overrides)
    validate_config(cfg)
    torch.manual_seed(0)
    actor, _, _ = utils_gorl.make_encoder(cfg, 17, 6, "cpu")
    policy = make_gorl_policy(actor, utils_gorl.make_decoder(cfg, 17, 6, "cpu", identity=True))
    collector = utils_gorl.make_collector(cfg, "cheetah-run", policy, torch.device("cpu"))
    batches = iter(collector)
    out = [collect_batch(collector, batches, 100 + i, torch.device("cpu"), reseed_envs=False)
           for i in range(num_batches)]
    collector.shutdown()
    return out


def test_unrolled_batches_carry_the_envs_across_iterations():
    """collector.unroll_length=T: num_envs x T steps per PPO iteration; the envs run on across batches and the
    1000-step time limit is a truncation inside a batch, followed by a fresh episode (TorchRL's semantics)."""
    first, second, third = _unrolled_batches(3)
    assert first.batch_size == second.batch_size == torch.Size([2, 400])
    steps = torch.cat([b["step_count"].squeeze(-1) for b in (first, second, third)], dim=1)
    assert torch.equal(steps[:, :1000], torch.arange(1000).expand(2, 1000))  # no reset at the batch boundaries
    assert torch.equal(steps[:, 1000:], torch.arange(200).expand(2, 200))  # a new episode after the time limit
    truncated = torch.cat([b["next", "truncated"].squeeze(-1) for b in (first, second, third)], dim=1)
    assert truncated[:, 999].all() and truncated.sum() == 2
    assert not torch.cat([b["next", "terminated"] for b in (first, second, third)], dim=1).any()
    assert torch.equal(second["observation"][:, 0], first["next", "observation"][:, -1])  # the same episode goes on
    # the envs are seeded once, at construction, and each batch's sampling by its seed: a new run repeats it
    again = _unrolled_batches(1)[0]
    assert torch.equal(again["action"], first["action"]) and torch.equal(again["observation"], first["observation"])


def test_unrolled_envs_start_staggered():
    """collector.stagger_episodes (the default): each env's first episode is cut short at its own random step, so
    envs started together do not reach the time limit together; later episodes run the full 1000 steps."""
    batches = _unrolled_batches(3, "collector.num_envs=4", "schedule.stage_frames=[16000,16000]", stagger=True)
    steps = torch.cat([b["step_count"].squeeze(-1) for b in batches], dim=1)
    truncated = torch.cat([b["next", "truncated"].squeeze(-1) for b in batches], dim=1)
    start = steps[:, 0]
    assert len(set(start.tolist())) == 4 and start.max() < 1000
    for env in range(4):
        first_end = 999 - int(start[env])  # the first episode ends when the count reaches the time limit
        assert truncated[env, first_end] and steps[env, first_end] == 999
        assert steps[env, first_end + 1] == 0  # then a fresh, full episode
        assert not truncated[env, first_end + 1:first_end + 1000].any()
    again = _unrolled_batches(1, "collector.num_envs=4", "schedule.stage_frames=[16000,16000]", stagger=True)[0]
    assert torch.equal(again["step_count"], batches[0]["step_count"])  # a function of the run's seed


def test_single_pass_critic_values_match_torchrl_gae():
    """PPOUpdate's GAE reads the next value from the following row inside a trajectory and calls the critic only
    after a done and at the batch's end: it gives TorchRL's two-pass GAE, also across a truncation in the batch."""
    from torchrl.objectives.value import GAE

    cfg = _compose("preset=smoke", "collector.unroll_length=400")
    # three consecutive batches of staggered envs: each env's first episode ends at its own step
    third = torch.cat(_unrolled_batches(3, stagger=True), dim=1)
    ends = [row.nonzero().flatten().tolist() for row in third["next", "done"].squeeze(-1)]
    assert all(ends) and ends[0] != ends[1]
    for key in (("next", "terminated"), ("next", "done")):  # and a termination, which GAE does not bootstrap
        third[key][0, 100] = True
    torch.manual_seed(0)
    actor, critic, norm = utils_gorl.make_encoder(cfg, 17, 6, "cpu")
    norm.update(third["observation"])  # a non-trivial normaliser: values depend on it
    ppo = utils_gorl.make_ppo_update(cfg, actor, critic, 0.99, torch.device("cpu"), norm)
    ours = ppo.gae_(third.clone())
    theirs = GAE(gamma=0.99, lmbda=cfg.ppo.gae_lambda, value_network=critic, average_gae=False)(third.clone())
    for key in ("state_value", ("next", "state_value"), "advantage", "value_target"):
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-5)
    done = third["next", "done"].squeeze(-1)
    # after the truncation the next value is the final observation's, not the reset observation's
    assert not torch.allclose(ours["next", "state_value"][done], ours["state_value"][:, 1:][done[:, :-1]])


@pytest.mark.slow
def test_unrolled_smoke_run_counts_every_env_step(tmp_path):
    result = _run("gorl_ppo.py", tmp_path, "collector.unroll_length=500")
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    # 2 stages x 4 iterations x (2 envs x 500 steps), plus one iteration's worth (1000 steps) of decoder data
    assert summary["frames_encoder"] == 8000 and summary["frames_decoder_data"] == 1000
    assert summary["refits"][0]["rows"] == 1000 and len(_eval_rows(tmp_path)) == 6


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_names_the_key_and_the_fix(tmp_path):
    result = _run("gorl_ppo.py", tmp_path, "device=cuda")
    assert result.returncode != 0
    assert "config key device is 'cuda' but CUDA is not available here" in result.stderr
    assert "use device=cpu, or device=auto" in result.stderr
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "eval.csv").exists()


@pytest.fixture(scope="module")
def weighted_run(tmp_path_factory):
    """Two stages with the GMPO-weighted decoder refit, saving the decoder data for the offline scripts."""
    run_dir = tmp_path_factory.mktemp("weighted")
    result = _run("gorl_ppo.py", run_dir, "schedule.decoder_refit=weighted", "schedule.save_decoder_data=true",
                  "decoder.type=diffusion")
    assert result.returncode == 0, result.stderr[-4000:]
    return run_dir


def test_weighted_refit_run_saves_its_decoder_data(weighted_run):
    from torchrl_gorl.training import load_transitions, TRANSITION_KEYS

    summary = json.loads((weighted_run / "summary.json").read_text())
    assert len(summary["refits"]) == 1 and summary["frames_total"] == 10000
    data = load_transitions(weighted_run / "datasets" / "stage0", required_keys=TRANSITION_KEYS)[:]
    assert data.shape == (2000,)
    # the standardised GAE advantages the weights were made from
    assert abs(data["advantage"].mean().item()) < 1e-4 and abs(data["advantage"].std().item() - 1) < 1e-3
    assert data["next", "done"].sum() == 2  # one full episode per env


def test_weighted_refit_uses_gmpo_weights():
    from torchrl_gorl import FlowMatchingLoss, GMPOLoss

    cfg = _compose("preset=smoke", "schedule.decoder_refit=weighted", "refit.gmpo_beta=2.0")
    decoder = utils_gorl.make_decoder(cfg, 17, 6, torch.device("cpu"))
    loss = utils_gorl.make_decoder_loss(cfg, decoder)
    assert isinstance(loss, GMPOLoss) and loss.beta == 2.0 and loss.max_weight == 20.0
    assert isinstance(utils_gorl.make_decoder_loss(_compose("preset=smoke"), decoder), FlowMatchingLoss)
    # the weights change what the refit learns: two equally likely modes, one with positive advantage
    from tensordict import TensorDict

    from torchrl_gorl.training import refit_decoder

    torch.manual_seed(0)
    n = 2000
    mode = torch.randint(0, 2, (n, 1)).float() * 2 - 1
    data = TensorDict(observation=torch.zeros(n, 17), action=mode.expand(n, 6) + 0.05 * torch.randn(n, 6),
                      advantage=mode.squeeze(-1), batch_size=[n])
    fractions = {}
    for refit in ("plain", "weighted"):
        cfg = _compose("preset=smoke", f"schedule.decoder_refit={refit}", "refit.gmpo_beta=3.0", "decoder.num_cells=[64,64]")
        torch.manual_seed(0)
        decoder = utils_gorl.make_decoder(cfg, 17, 6, torch.device("cpu"))
        refit_decoder(utils_gorl.make_decoder_loss(cfg, decoder), data, batch_size=256, lr=3e-3, max_epochs=15,
                      patience=15, seed=0)
        with torch.no_grad():
            actions = decoder.decode(torch.zeros(4000, 17), torch.randn(4000, 6))
        fractions[refit] = (actions.mean(-1) > 0).float().mean().item()
    assert abs(fractions["plain"] - 0.5) < 0.15 and fractions["weighted"] > 0.8, fractions


@pytest.mark.parametrize("script", ["gmpo.py", "gmpg.py"])
def test_offline_scripts_train_on_a_saved_dataset(weighted_run, script, tmp_path):
    cmd = [sys.executable, str(SOTA / script), f"dataset.paths=[{weighted_run / 'datasets' / 'stage0'}]",
           "critic.steps=20", "policy.steps=4", "behaviour.steps=20" if script == "gmpg.py" else "policy.lr=1e-4",
           "eval.num_episodes=1", "eval.num_envs=1", "eval.interval=2", "decoder.num_cells=[32,32]",
           "critic.num_cells=[32]", "env.task=cheetah-run", f"hydra.run.dir={tmp_path}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["dataset_transitions"] == 2000 and summary["algorithm"] == script[:-3]
    # the behaviour policy's return beside the learned one: two full episodes, all the rewards in them
    from torchrl_gorl.training import load_transitions

    rewards = load_transitions(weighted_run / "datasets" / "stage0")[:]["next", "reward"]
    assert summary["dataset_episodes"] == 2
    assert summary["dataset_return_mean"] == pytest.approx(rewards.double().sum().item() / 2)
    rows = (tmp_path / "eval.csv").read_text().strip().splitlines()
    assert rows[-1].startswith("final,4,") and len(rows) >= 4  # header, two in training, the final one (step 4)
    assert [r.split(",")[:2] for r in rows if r.startswith("policy,")] == [["policy", "2"], ["policy", "4"]]


def test_episode_returns_split_at_done_and_drop_the_incomplete_tail():
    from tensordict import TensorDict

    import utils_offline

    reward = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unsqueeze(-1)
    done = torch.tensor([False, True, False, False, True, False]).unsqueeze(-1)
    data = TensorDict({"next": {"reward": reward, "done": done}}, batch_size=[6])
    assert utils_offline.episode_returns(data).tolist() == [3.0, 12.0]
    assert utils_offline.episode_returns(data[:1]).numel() == 0


def test_offline_script_names_a_missing_dataset(tmp_path):
    cmd = [sys.executable, str(SOTA / "gmpo.py"), f"dataset.paths=[{tmp_path / 'nowhere'}]", f"hydra.run.dir={tmp_path}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0 and "config key dataset.paths: no dataset at" in result.stderr


def test_resume_accepts_a_moved_ray_cluster_and_compares_staggering_where_it_acts(smoke_run):
    """The Ray address is where the cluster is, not what the run computes; staggering is compared where it acts;
    a key the checkpoint lacks is a difference, named (checkpoints carry a format version, not a key table)."""
    saved = _load(smoke_run, "stage1_end")
    saved["config"]["collector"]["ray_address"] = "10.0.0.1:6379"
    check_resume_compatible(_compose("preset=smoke"), saved["config"])
    with pytest.raises(ValueError, match="collector.unroll_length = 500 does not match the resumed checkpoint's None"):
        check_resume_compatible(_compose("preset=smoke", "collector.unroll_length=500"), saved["config"])
    # an unrolled run that did not stagger: resuming it with staggering would be another run
    saved["config"]["collector"].update(unroll_length=500, stagger_episodes=False)
    with pytest.raises(ValueError, match="collector.stagger_episodes = True does not match the resumed checkpoint's False"):
        check_resume_compatible(_compose("preset=smoke", "collector.unroll_length=500"), saved["config"])
    check_resume_compatible(_compose("preset=smoke", "collector.unroll_length=500", "collector.stagger_episodes=false"),
                            saved["config"])
    # where staggering cannot act (TorchRL's env path), the flag is no difference
    saved["config"]["collector"]["env_backend"] = "serial"
    check_resume_compatible(_compose("preset=smoke", "collector.unroll_length=500", "collector.env_backend=serial"),
                            saved["config"])
    del saved["config"]["env"]["backend"]
    with pytest.raises(ValueError, match="env.backend = 'dm_control' does not match the resumed checkpoint's None"):
        check_resume_compatible(_compose("preset=smoke", "collector.unroll_length=500", "collector.env_backend=serial"),
                                saved["config"])
