"""GenerativeRL's objectives: GMPO weights and loss, flow log-densities and GMPG, IQL critics, offline datasets."""
import copy
import math
import pathlib
import sys

import pytest
import torch
from tensordict import TensorDict

from torchrl_gorl import (
    DiffusionDecoderModule,
    flow_log_prob,
    flow_sample_log_prob,
    FlowDecoderModule,
    GMPGLoss,
    gmpo_weights,
    GMPOLoss,
    IQLCriticLoss,
    make_iql_critics,
)
from torchrl_gorl.training import load_transitions, save_transitions

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sota-implementations"))

OBS, ACT = 4, 2


def _transitions(n=32):
    data = TensorDict(observation=torch.randn(n, OBS), action=torch.randn(n, ACT), batch_size=[n])
    data["next"] = TensorDict(observation=torch.randn(n, OBS), reward=torch.randn(n, 1),
                              done=torch.zeros(n, 1, dtype=torch.bool), terminated=torch.zeros(n, 1, dtype=torch.bool),
                              batch_size=[n])
    return data


def test_gmpo_weights_clip_from_above_only():
    advantage = torch.tensor([-50.0, -1.0, 0.0, 0.5, 2.0, 1e4])
    w = gmpo_weights(advantage, beta=2.0, max_weight=20.0)
    expected = torch.tensor([math.exp(-100), math.exp(-2), 1.0, math.e, 20.0, 20.0])
    torch.testing.assert_close(w, expected)
    assert torch.isfinite(w).all()  # exp(2e4) would overflow


@pytest.mark.parametrize("decoder_cls", [FlowDecoderModule, DiffusionDecoderModule])
def test_gmpo_loss_is_the_weighted_generative_loss(decoder_cls):
    torch.manual_seed(0)
    decoder = decoder_cls(OBS, ACT, num_cells=(16,))
    data = _transitions()
    data["advantage"] = torch.randn(32, 1)
    loss_fn = GMPOLoss(decoder, beta=1.5, max_weight=3.0, num_noise_samples=2)
    torch.manual_seed(1)
    out = loss_fn(data)
    # same draws, weights written by hand into the core loss's weight key
    inner = copy.deepcopy(loss_fn.generative_loss)
    weighted = data.clone()
    weighted["gmpo_weight"] = torch.exp(1.5 * data["advantage"].squeeze(-1)).clamp(max=3.0)
    torch.manual_seed(1)
    expected = inner(weighted)[inner.loss_name]
    torch.testing.assert_close(out["loss_gmpo"], expected)
    assert out["weight_max"] <= 3.0 and 0 < out["clamped_fraction"] < 1
    assert "gmpo_weight" not in data.keys()  # the caller's tensordict is not written to
    out["loss_gmpo"].backward()
    assert all(p.grad is not None for p in decoder.network.parameters())
    # beta = 0: every weight is 1, the unweighted loss (behaviour cloning)
    torch.manual_seed(1)
    bc = GMPOLoss(decoder, beta=0.0, num_noise_samples=2)(data)
    torch.manual_seed(1)
    plain = type(inner)(decoder, num_noise_samples=2)  # the core loss without a weight key
    torch.testing.assert_close(bc["loss_gmpo"], plain(data)[plain.loss_name])
    assert bc["weight_max"] == 1.0


def test_gmpo_advantage_from_iql_critics_gives_no_critic_gradient():
    critic = IQLCriticLoss(*make_iql_critics(OBS, ACT, num_cells=(16,)))
    decoder = FlowDecoderModule(OBS, ACT, num_cells=(16,))
    data = _transitions()
    out = GMPOLoss(decoder, critic=critic)(data)
    out["loss_gmpo"].backward()
    assert all(p.grad is None for p in critic.parameters())
    assert all(p.grad is not None for p in decoder.network.parameters())
    torch.testing.assert_close(out["advantage_mean"], critic.advantage(data).mean())


def test_gmpo_bad_input():
    decoder = FlowDecoderModule(OBS, ACT, num_cells=(16,))
    with pytest.raises(ValueError, match="beta must be a non-negative number, got -1.0"):
        GMPOLoss(decoder, beta=-1.0)
    with pytest.raises(ValueError, match="max_weight must be a positive number, got 0"):
        GMPOLoss(decoder, max_weight=0)
    with pytest.raises(KeyError, match="advantage"):
        GMPOLoss(decoder)(_transitions())
    data = _transitions()
    data["advantage"] = torch.randn(32, 3)
    with pytest.raises(ValueError, match="advantage must have shape"):
        GMPOLoss(decoder)(data)


def test_iql_critic_losses_train_their_own_networks():
    critic = IQLCriticLoss(*make_iql_critics(OBS, ACT, num_cells=(16,)), expectile=0.7)
    data = _transitions()
    out = critic(data)
    out["loss_value"].backward()
    assert all(p.grad is not None for p in critic.value_network_params.values(True, True))
    assert all(p.grad is None for p in critic.qvalue_network_params.values(True, True))
    critic.zero_grad(set_to_none=True)
    critic(data)["loss_qvalue"].backward()
    assert all(p.grad is not None for p in critic.qvalue_network_params.values(True, True))
    assert critic.advantage(data).shape == (32,)


class LinearFlow:
    """``v(s, x, t) = alpha * x + c``: its Euler maps are linear, so their densities have closed forms."""

    def __init__(self, alpha, num_steps):
        self.alpha, self.num_steps, self.action_dim = torch.as_tensor(alpha), num_steps, len(alpha)

    def velocity(self, observation, x, t):
        return self.alpha * x + 0.3 * t


def _normal_log_prob(x):
    return torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(-1)


def test_flow_log_densities_match_closed_forms_on_a_linear_flow():
    alpha, K = [0.7, -0.4, 1.5], 8
    flow, a = LinearFlow(alpha, K), torch.tensor(alpha, dtype=torch.float64)
    z = torch.randn(5, 3, dtype=torch.float64)
    obs = torch.zeros(5, 1, dtype=torch.float64)
    # sampling x <- (1 - alpha / K) x + ...: log p(x_K) = log N(z) - K sum_i log|1 - alpha_i / K|
    action, log_prob = flow_sample_log_prob(flow, obs, z, divergence="exact")
    torch.testing.assert_close(log_prob, _normal_log_prob(z) - K * torch.log((1 - a / K).abs()).sum())
    # backward integration x <- (1 + alpha / K) x + ...: log p(a) = log N(T(a)) + K sum_i log|1 + alpha_i / K|
    x = action.clone()
    for j in range(K):
        x = x + (a * x + 0.3 * j / K) / K
    expected = _normal_log_prob(x) + K * torch.log(1 + a / K).sum()
    torch.testing.assert_close(flow_log_prob(flow, obs, action, divergence="exact"), expected)
    # Hutchinson with Rademacher probes is exact on a diagonal Jacobian: the first-order term sum(alpha)
    _, hutchinson = flow_sample_log_prob(flow, obs, z, divergence="hutchinson")
    torch.testing.assert_close(hutchinson, _normal_log_prob(z) + a.sum())


def test_flow_log_prob_is_a_normalised_density():
    """1D: the Rademacher probe is exact, and exp(log p) integrates to 1 over the real line."""
    torch.manual_seed(0)
    flow = FlowDecoderModule(2, 1, num_cells=(32, 32), num_steps=16).double()
    grid = torch.linspace(-8, 8, 4001, dtype=torch.float64).unsqueeze(-1)
    obs = torch.tensor([0.3, -1.0], dtype=torch.float64).expand(grid.shape[0], 2)
    for divergence in ("exact", "hutchinson"):
        density = flow_log_prob(flow, obs, grid, divergence=divergence).exp()
        total = torch.trapezoid(density, grid.squeeze(-1))
        assert abs(total.item() - 1.0) < 1e-3, (divergence, total)


def test_gmpg_anchor_vanishes_at_the_behaviour_and_gradients_reach_the_policy_only():
    torch.manual_seed(0)
    mu = FlowDecoderModule(OBS, ACT, num_cells=(16,), num_steps=4)
    pi = copy.deepcopy(mu)
    critic = IQLCriticLoss(*make_iql_critics(OBS, ACT, num_cells=(16,)))
    loss_fn = GMPGLoss(pi, mu, critic, beta=2.0)
    out = loss_fn(TensorDict(observation=torch.randn(16, OBS), batch_size=[16]))
    assert out["kl_bits"] == 0  # same flow, same estimator
    out["loss_gmpg"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pi.network.parameters())
    assert all(p.grad is None for p in mu.parameters()) and all(p.grad is None for p in critic.parameters())
    for policy_log_prob in ("path", "reverse"):
        for divergence in ("exact", "hutchinson"):
            GMPGLoss(copy.deepcopy(mu), mu, critic, divergence=divergence, policy_log_prob=policy_log_prob)(
                TensorDict(observation=torch.randn(4, OBS), batch_size=[4]))["loss_gmpg"].backward()


def test_gmpg_gradient_follows_the_critic():
    """The Q term reaches the policy through the sampled action: beta changes the gradient, the critic gets none."""
    torch.manual_seed(0)
    mu = FlowDecoderModule(OBS, ACT, num_cells=(16,), num_steps=4)
    critic = IQLCriticLoss(*make_iql_critics(OBS, ACT, num_cells=(16,)))
    observation = TensorDict(observation=torch.randn(16, OBS), batch_size=[16])
    grads = {}
    for beta in (0.0, 100.0):
        pi = copy.deepcopy(mu)
        torch.manual_seed(1)
        GMPGLoss(pi, mu, critic, beta=beta)(observation)["loss_gmpg"].backward()
        grads[beta] = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).flatten() for p in pi.network.parameters()])
    assert (grads[100.0] - grads[0.0]).norm() > 3 * grads[0.0].norm()
    assert all(p.grad is None for p in critic.parameters())


def test_gmpg_bad_input():
    mu = FlowDecoderModule(OBS, ACT, num_cells=(16,))
    critic = IQLCriticLoss(*make_iql_critics(OBS, ACT, num_cells=(16,)))
    with pytest.raises(ValueError, match="must be different modules"):
        GMPGLoss(mu, mu, critic)
    with pytest.raises(ValueError, match="divergence must be one of"):
        GMPGLoss(copy.deepcopy(mu), mu, critic, divergence="trace")
    with pytest.raises(TypeError, match="policy_flow must be a FlowDecoderModule"):
        GMPGLoss(DiffusionDecoderModule(OBS, ACT), mu, critic)


def test_transitions_round_trip_and_atomic_replace(tmp_path):
    data = _transitions(20)
    path = save_transitions(data, tmp_path / "stage0")
    save_transitions(data[:10], path)  # replaced by a complete dataset
    buffer = load_transitions([path, path], batch_size=5, required_keys=[("next", "reward")])
    assert len(buffer) == 20 and buffer.sample().shape == (5,)
    torch.testing.assert_close(buffer[:10]["next", "observation"], data[:10]["next", "observation"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage0"]  # no temporary leftovers
    with pytest.raises(ValueError, match="no dataset at"):
        load_transitions(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="lacks the keys"):
        load_transitions(path, required_keys=["advantage"])


def test_gmpo_moves_the_swiss_roll_policy_to_higher_values():
    """The paper's toy: GMPO's samples have a clearly higher mean value than the behaviour data."""
    import swiss_roll

    generator = torch.Generator().manual_seed(0)
    points = swiss_roll.swiss_roll(2048, generator)
    data = TensorDict(observation=torch.zeros(2048, 1), action=points, batch_size=[2048])
    flow = swiss_roll.train_gmpo(data, steps=600, generator=generator)
    samples = swiss_roll.sample_paths(flow, 2048, generator)[:, -1]
    data_value, gmpo_value = swiss_roll.value(points).mean(), swiss_roll.value(samples).mean()
    assert gmpo_value > data_value + 0.1, (data_value, gmpo_value)
