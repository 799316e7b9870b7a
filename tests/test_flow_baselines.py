"""The direct flow-policy baselines: FlowPolicy, FPOLoss and DPPOLoss, and their scripts."""
import json
import math
import pathlib
import subprocess
import sys

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_gorl import DPPOLoss, FlowDecoderModule, FlowPolicy, FPOLoss, make_value_network
from torchrl_gorl.training import latest_checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOTA = ROOT / "sota-implementations"

OBS, ACT, B = 5, 3, 64


def _policy(record, **kwargs):
    torch.manual_seed(0)
    flow = FlowDecoderModule(OBS, ACT, num_cells=(32, 32), output_scale=0.25)
    flow.observation_norm.update(torch.randn(100, OBS) * 2 + 1)  # non-trivial statistics
    policy = FlowPolicy(flow, record=record, **kwargs)
    critic = make_value_network(OBS, num_cells=(32,), observation_norm=flow.observation_norm)
    return policy, critic


def _batch(policy, n=B):
    data = policy(TensorDict(observation=torch.randn(n, OBS), batch_size=[n]))
    data["advantage"] = torch.randn(n, 1)
    data["value_target"] = torch.randn(n, 1)
    return data


def test_fpo_records_pairs_and_their_losses():
    policy, _ = _policy("fpo", num_mc_samples=6)
    data = _batch(policy)
    assert data["action"].shape == (B, ACT)
    assert data["fpo", "t"].shape == (B, 6, 1) and data["fpo", "noise"].shape == (B, 6, ACT)
    # t from the Euler grid {1.0, 0.9, ..., 0.1}: the left ends of the steps
    grid = torch.linspace(1.0, 0.1, 10)
    assert torch.isclose(data["fpo", "t"].reshape(-1, 1), grid).any(-1).all()
    expected = policy.cfm_loss(data["observation"], data["action"], data["fpo", "t"], data["fpo", "noise"])
    assert torch.equal(data["fpo", "cfm_loss"], expected) and not data["fpo", "cfm_loss"].requires_grad


def test_cfm_loss_matches_the_noise_prediction_form():
    """'eps' weighting: mean_d (eps - eps_hat)^2 with eps_hat = x_t + (1 - t) v, as the reference writes it."""
    policy, _ = _policy("fpo")
    obs, a = torch.randn(4, OBS), torch.randn(4, ACT)
    t, eps = torch.rand(4, 8, 1), torch.randn(4, 8, ACT)
    x_t = t * eps + (1 - t) * a.unsqueeze(1)
    eps_hat = x_t + (1 - t) * policy.flow.velocity(obs.unsqueeze(1), x_t, t)
    torch.testing.assert_close(policy.cfm_loss(obs, a, t, eps), (eps - eps_hat).pow(2).mean(-1))


def test_deterministic_mode_starts_from_zero_and_records_nothing():
    policy, _ = _policy("fpo")
    obs = torch.randn(7, OBS)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        td = policy(TensorDict(observation=obs, batch_size=[7]))
    assert ("fpo", "t") not in td.keys(True)
    assert torch.equal(td["action"], policy.flow.decode(obs, torch.zeros(7, ACT)))


@pytest.mark.parametrize("ratio", ["per_sample", "mean"])
def test_fpo_ratio_is_one_before_the_first_update(ratio):
    policy, critic = _policy("fpo")
    out = FPOLoss(policy, critic, ratio=ratio)(_batch(policy))
    assert out["mean_ratio"] == 1 and out["max_ratio"] == 1
    assert out["clip_fraction"] == 0 and out["kl_approx"] == 0


def test_fpo_gradients_reach_the_flow_and_the_critic_only():
    policy, critic = _policy("fpo")
    data = _batch(policy)
    out = FPOLoss(policy, critic)(data)
    (out["loss_objective"] + out["loss_critic"]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.flow.network.parameters())
    assert all(p.grad is not None for p in critic.parameters())
    for key in ("action", ("fpo", "cfm_loss"), ("fpo", "noise")):
        assert not data[key].requires_grad
    # the objective alone does not touch the critic
    policy.zero_grad(set_to_none=True), critic.zero_grad(set_to_none=True)
    FPOLoss(policy, critic)(data)["loss_objective"].backward()
    assert all(p.grad is None for p in critic.parameters())


@pytest.mark.parametrize("ratio", ["per_sample", "mean"])
def test_fpo_ratio_rises_when_the_cfm_loss_of_an_action_drops(ratio):
    policy, critic = _policy("fpo")
    data = _batch(policy, n=8)
    loss_fn = FPOLoss(policy, critic, ratio=ratio, normalize_advantage=False)
    optim = torch.optim.SGD(policy.parameters(), lr=0.2)
    keep = data[:4]  # lower the CFM loss of these actions at their stored pairs, raise it for the others
    for _ in range(30):
        new = policy.cfm_loss(data["observation"], data["action"], data["fpo", "t"], data["fpo", "noise"])
        objective = new[:4].mean() - new[4:].mean()
        optim.zero_grad()
        objective.backward()
        optim.step()
    up = loss_fn(keep)["mean_ratio"]
    down = loss_fn(data[4:])["mean_ratio"]
    assert up > 1.01 and down < 0.99
    # positive advantages favour the actions whose ratio went up: the surrogate gain is larger there
    keep["advantage"] = torch.ones(4, 1)
    gain_up = -loss_fn(keep)["loss_objective"]
    assert 1.0 < gain_up <= 1.05 + 1e-6  # min(r A, clip(r) A) with A = 1: above 1, capped at 1 + eps


def test_fpo_per_sample_log_ratio_is_clipped():
    policy, critic = _policy("fpo")
    data = _batch(policy, n=4)
    data["fpo", "cfm_loss"] = data["fpo", "cfm_loss"] + 10.0  # old losses far above the new ones
    out = FPOLoss(policy, critic, log_ratio_clip=3.0)(data)
    torch.testing.assert_close(out["max_ratio"], torch.tensor(math.exp(3.0)))
    assert FPOLoss(policy, critic, ratio="mean")(data)["max_ratio"] > math.exp(9)


def test_dppo_records_the_chain_and_its_step_likelihoods():
    policy, _ = _policy("dppo", sde_sigma=0.05)
    data = _batch(policy)
    chain = data["dppo", "chain"]
    assert chain.shape == (B, 11, ACT) and data["dppo", "log_prob"].shape == (B, 10, ACT)
    assert torch.equal(chain[:, -1], data["action"])
    # step k is Gaussian around the Euler step with std sigma
    k = 3
    x, x_next = chain[:, k], chain[:, k + 1]
    t = torch.full((B, 1), 1 - k / 10)
    mean = x - 0.1 * policy.flow.velocity(data["observation"], x, t)
    expected = torch.distributions.Normal(mean, 0.05).log_prob(x_next)
    torch.testing.assert_close(data["dppo", "log_prob"][:, k], expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize(
    "options",
    [{}, {"num_finetune_steps": 4, "aggregate": "mean", "log_prob_clamp": (-5, 2), "denoising_discount": 0.9,
          "clip_epsilon_base": 0.01}],
)
def test_dppo_ratio_is_one_before_the_first_update_and_trains_the_flow(options):
    policy, critic = _policy("dppo", sde_sigma=0.05)
    data = _batch(policy)
    out = DPPOLoss(policy, critic, **options)(data)
    assert out["mean_ratio"] == 1 and out["clip_fraction"] == 0
    (out["loss_objective"] + out["loss_critic"]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.flow.network.parameters())


def test_dppo_clip_grows_along_the_chain_and_discounts_early_steps():
    policy, critic = _policy("dppo", sde_sigma=0.05)
    loss_fn = DPPOLoss(policy, critic, clip_epsilon=0.2, clip_epsilon_base=0.01, num_finetune_steps=5,
                       denoising_discount=0.9)
    low, high = loss_fn._clip_bounds
    eps = high.expm1().squeeze(-1)
    torch.testing.assert_close(eps[0], torch.tensor(0.01)), torch.testing.assert_close(eps[-1], torch.tensor(0.2))
    assert (eps.diff() > 0).all()
    torch.testing.assert_close(loss_fn.step_weight, 0.9 ** torch.arange(4, -1, -1.0))


def test_dppo_moves_the_step_ratios_in_the_advantage_direction():
    policy, critic = _policy("dppo", sde_sigma=0.05)
    data = _batch(policy)
    data["advantage"] = torch.where(torch.arange(B) < B // 2, 1.0, -1.0).unsqueeze(-1)
    loss_fn = DPPOLoss(policy, critic, critic_coeff=0.0, normalize_advantage=False)
    optim = torch.optim.Adam(policy.parameters(), lr=1e-3)
    for _ in range(5):
        optim.zero_grad()
        loss_fn(data)["loss_objective"].backward()
        optim.step()
    with torch.no_grad():
        new = policy.step_log_prob(data["observation"], data["dppo", "chain"]).sum(-1)
    log_ratio = (new - data["dppo", "log_prob"].sum(-1)).mean(-1)
    assert log_ratio[: B // 2].mean() > 0 > log_ratio[B // 2 :].mean()


def test_flow_policy_state_dict_round_trip():
    policy, _ = _policy("dppo", sde_sigma=[0.05] * 10)
    other = FlowPolicy(FlowDecoderModule(OBS, ACT, num_cells=(32, 32), output_scale=0.25), record="dppo", sde_sigma=0.1)
    other.load_state_dict(policy.state_dict())
    obs = torch.randn(3, OBS)
    torch.manual_seed(3)
    a = policy(TensorDict(observation=obs, batch_size=[3]))["action"]
    torch.manual_seed(3)
    b = other(TensorDict(observation=obs, batch_size=[3]))["action"]
    assert torch.equal(a, b)
    unscaled = FlowPolicy(FlowDecoderModule(OBS, ACT, num_cells=(32, 32)), record="dppo", sde_sigma=0.05)
    with pytest.raises(ValueError, match="sampler settings"):
        unscaled.load_state_dict(policy.state_dict())


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda f: FlowPolicy(f, record="ppo"), "record must be one of"),
        (lambda f: FlowPolicy(f, record="dppo"), "needs stochastic steps"),
        (lambda f: FlowPolicy(f, record="dppo", sde_sigma=0.0, log_prob_min_std=0.1), "needs stochastic steps"),
        (lambda f: DPPOLoss(FlowPolicy(f, record="dppo", sde_sigma=0.1), clip_epsilon=0.1, clip_epsilon_base=0.2),
         "clip_epsilon_base must be in"),
        (lambda f: FlowPolicy(f, sde_sigma=[0.1, 0.1]), "sde_sigma must be"),
        (lambda f: FlowPolicy(f, num_mc_samples=0), "num_mc_samples must be a positive integer"),
        (lambda f: FPOLoss(FlowPolicy(f, record="fpo"), ratio="median"), "ratio must be one of"),
        (lambda f: DPPOLoss(FlowPolicy(f, record="dppo", sde_sigma=0.1), num_finetune_steps=11), r"num_finetune_steps must be an integer in \[1, 10\]"),
        (lambda f: FlowDecoderModule(OBS, ACT, output_scale=-1.0), "output_scale must be a positive number"),
    ],
)
def test_bad_arguments_fail_with_the_name(make, message):
    with pytest.raises(ValueError, match=message):
        make(FlowDecoderModule(OBS, ACT, num_cells=(16,)))


def test_losses_name_missing_recordings():
    policy, critic = _policy(None)
    data = _batch(policy)
    with pytest.raises(KeyError, match='record="fpo"'):
        FPOLoss(policy, critic)(data)
    with pytest.raises(KeyError, match='record="dppo"'):
        DPPOLoss(FlowPolicy(policy.flow, record="dppo", sde_sigma=0.1), critic)(data)


# dppo.py is fpo.py with FlowPolicy(record="dppo") and DPPOLoss, which the DPPOLoss tests above cover: its
# end-to-end run is slow-marked to keep the default suite's time for the Ray and Playground runs. The collection
# policy is compiled, as in the default preset: the flow policy's noise draws go through the compiled graph.
@pytest.mark.parametrize("script", ["fpo.py", pytest.param("dppo.py", marks=pytest.mark.slow)])
def test_smoke_run(script, tmp_path):
    cmd = [sys.executable, str(SOTA / script), "preset=smoke", f"hydra.run.dir={tmp_path}", "collector.compile_policy=true"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["algorithm"] == script[:-3]
    assert summary["frames_total"] == summary["frames_encoder"] == 10000  # GoRL's smoke budget
    assert math.isfinite(summary["final_return"])
    assert latest_checkpoint(tmp_path / "checkpoints") is not None and (tmp_path / "learning_curve.png").exists()
    train = (tmp_path / "logs").rglob("mean_ratio.csv")
    assert next(train, None) is not None
