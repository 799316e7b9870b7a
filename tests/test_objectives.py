"""Objectives: decoder losses (keys, weights, errors, two-mode fit) and latent PPO (ratio, gradient routing)."""
import math

import pytest
import torch
from tensordict import TensorDict
from torchrl.objectives import ClipPPOLoss

from torchrl_gorl import (
    check_latent_keys,
    DiffusionDecoderModule,
    DiffusionLoss,
    FlowDecoderModule,
    FlowMatchingLoss,
    LatentPriorLoss,
    make_gorl_policy,
    make_latent_actor,
    make_latent_ppo_loss,
    make_value_network,
)

OBS, ACT = 5, 3
LOSSES = [(FlowDecoderModule, FlowMatchingLoss, "loss_flow_matching"), (DiffusionDecoderModule, DiffusionLoss, "loss_diffusion")]


def _batch(n=32):
    return TensorDict(observation=torch.randn(n, OBS), action=torch.randn(n, ACT), batch_size=[n])


# ----------------------------------------------------------------------------- decoder losses
@pytest.mark.parametrize("decoder_cls,loss_cls,name", LOSSES)
def test_decoder_loss_outputs_and_gradients(decoder_cls, loss_cls, name):
    decoder = decoder_cls(OBS, ACT)
    loss_fn = loss_cls(decoder)
    assert loss_fn.in_keys == ["observation", "action"] and loss_fn.out_keys == [name]
    out = loss_fn(_batch())
    assert out[name].shape == () and out[name] > 0
    assert not out["target_mean_square"].requires_grad
    out[name].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in decoder.network.output_layer.parameters())
    # fresh noise on every call: the same batch gives another stochastic estimate
    data = _batch()
    assert loss_fn(data)[name] != loss_fn(data)[name]


def test_flow_matching_loss_is_the_cfm_objective():
    """With num_noise_samples draws fixed by the seed, the loss equals the formula written out."""
    decoder = FlowDecoderModule(OBS, ACT)
    loss_fn = FlowMatchingLoss(decoder, num_noise_samples=4)
    decoder.observation_norm.update(torch.randn(64, OBS) * 3)  # after the loss is built: must be seen by it
    data = _batch(16)
    torch.manual_seed(3)
    value = loss_fn(data)["loss_flow_matching"]
    torch.manual_seed(3)
    eps, t = torch.randn(16, 4, ACT), torch.rand(16, 4, 1)
    a = data["action"].unsqueeze(-2)
    x_t = t * eps + (1 - t) * a
    v = decoder.velocity(data["observation"].unsqueeze(-2).expand(16, 4, OBS), x_t, t)
    torch.testing.assert_close(value, ((v - (eps - a)) ** 2).mean())


def test_diffusion_loss_is_the_ddpm_objective():
    decoder = DiffusionDecoderModule(OBS, ACT)
    loss_fn = DiffusionLoss(decoder, num_noise_samples=4)
    decoder.observation_norm.update(torch.randn(64, OBS) * 3)
    data = _batch(16)
    torch.manual_seed(3)
    value = loss_fn(data)["loss_diffusion"]
    torch.manual_seed(3)
    eps = torch.randn(16, 4, ACT)
    t = torch.randint(1, 10, (16, 4, 1))
    abar = torch.tensor(
        [1.0, 0.97209, 0.89871, 0.78691, 0.64748, 0.49384, 0.34081, 0.20312, 0.09405, 0.02409]
    )[t]
    x_t = abar.sqrt() * data["action"].unsqueeze(-2) + (1 - abar).sqrt() * eps
    predicted = decoder.predict_noise(data["observation"].unsqueeze(-2).expand(16, 4, OBS), x_t, t)
    torch.testing.assert_close(value, ((predicted - eps) ** 2).mean(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("decoder_cls,loss_cls,name", LOSSES)
def test_reset_parameters_recursive_gives_a_fresh_lecun_decoder(decoder_cls, loss_cls, name):
    decoder = decoder_cls.identity(OBS, ACT)
    decoder.observation_norm.update(torch.randn(64, OBS) * 3 + 2)
    loss_fn = loss_cls(decoder)
    loss_fn.reset_parameters_recursive()
    z = torch.randn(4, ACT)
    assert not torch.equal(decoder.decode(torch.randn(4, OBS), z), z)  # no longer the identity
    assert torch.equal(decoder.observation_norm.loc, torch.zeros(OBS)) and int(decoder.observation_norm.count) == 0
    for layer in decoder.modules():
        if isinstance(layer, torch.nn.Linear):
            bound = math.sqrt(3.0 / layer.in_features)
            assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.8 * bound
            assert torch.count_nonzero(layer.bias) == 0


@pytest.mark.parametrize("decoder_cls,loss_cls,name", LOSSES)
def test_decoder_loss_weights_and_reduction(decoder_cls, loss_cls, name):
    decoder = decoder_cls(OBS, ACT)
    data = _batch()
    loss_fn = loss_cls(decoder)
    loss_fn.set_keys(weight="w")
    assert loss_fn.in_keys == ["observation", "action", "w"]
    data["w"] = torch.zeros(32, 1)
    out = loss_fn(data)
    assert out[name] == 0
    out[name].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in decoder.parameters())
    data["w"] = torch.ones(32)
    torch.manual_seed(1)
    weighted = loss_fn(data)
    torch.manual_seed(1)
    plain = loss_cls(decoder)(data)
    torch.testing.assert_close(weighted[name], plain[name])
    torch.testing.assert_close(weighted["weight_ess"], torch.tensor(1.0))
    assert loss_cls(decoder, reduction="none")(data)[name].shape == (32,)
    with pytest.raises(ValueError, match="negative"):
        data["w"] = -torch.ones(32)
        loss_fn(data)
    with pytest.raises(ValueError, match=r"weight 'w' must have shape \(32,\)"):
        data["w"] = torch.ones(32, 2)
        loss_fn(data)


@pytest.mark.parametrize("decoder_cls,loss_cls,name", LOSSES)
def test_decoder_loss_bad_input(decoder_cls, loss_cls, name):
    decoder = decoder_cls(OBS, ACT)
    loss_fn = loss_cls(decoder)
    with pytest.raises(KeyError, match="'action'"):
        loss_fn(TensorDict(observation=torch.randn(4, OBS), batch_size=[4]))
    bad = _batch(4)
    bad["action"][1, 2] = float("nan")
    with pytest.raises(ValueError, match="'action' holds 1 non-finite"):
        loss_fn(bad)
    with pytest.raises(ValueError, match="'observation' must have a last dimension of size 5"):
        loss_fn(TensorDict(observation=torch.randn(4, OBS + 2), action=torch.randn(4, ACT), batch_size=[4]))
    with pytest.raises(ValueError, match="num_noise_samples"):
        loss_cls(decoder, num_noise_samples=0)
    with pytest.raises(ValueError, match="reduction"):
        loss_cls(decoder, reduction="avg")
    other = FlowDecoderModule if decoder_cls is DiffusionDecoderModule else DiffusionDecoderModule
    with pytest.raises(TypeError, match=decoder_cls.__name__):
        loss_cls(other(OBS, ACT))
    loss_fn.set_keys(observation=("agent", "obs"))
    with pytest.raises(KeyError, match="'agent', 'obs'"):
        loss_fn(_batch(4))
    with pytest.raises(ValueError, match="not an accepted tensordict key"):
        loss_fn.set_keys(latent="z")


@pytest.mark.parametrize("decoder_cls,loss_cls,name", LOSSES)
def test_decoder_loss_nested_keys(decoder_cls, loss_cls, name):
    loss_fn = loss_cls(decoder_cls(OBS, ACT))
    loss_fn.set_keys(observation=("agent", "obs"), action=("agent", "act"))
    data = TensorDict({"agent": {"obs": torch.randn(8, OBS), "act": torch.randn(8, ACT)}}, batch_size=[8])
    assert torch.isfinite(loss_fn(data)[name])


def _two_mode_data(n, generator):
    """a = +1 with probability 0.2 (s < 0) or 0.8 (s >= 0), else -1; small noise around each mode."""
    s = torch.rand(n, 1, generator=generator) * 2 - 1
    p_up = torch.where(s < 0, 0.2, 0.8)
    sign = torch.where(torch.rand(n, 1, generator=generator) < p_up, 1.0, -1.0)
    return s, sign + 0.05 * torch.randn(n, 1, generator=generator)


def _mode_fractions(actions):
    up = ((actions - 1).abs() < 0.3).float().mean().item()
    down = ((actions + 1).abs() < 0.3).float().mean().item()
    gap = (actions.abs() < 0.5).float().mean().item()
    return up, down, gap


@pytest.mark.parametrize("decoder_cls,loss_cls,name", LOSSES)
def test_decoder_learns_two_modes_where_a_gaussian_cannot(decoder_cls, loss_cls, name):
    g = torch.Generator().manual_seed(0)
    s, a = _two_mode_data(4096, g)
    decoder = decoder_cls(1, 1, num_cells=(64, 64, 64))
    decoder.observation_norm.update(s)
    loss_fn = loss_cls(decoder)
    opt = torch.optim.Adam(decoder.parameters(), lr=3e-3)
    for _ in range(800):
        idx = torch.randint(0, 4096, (256,), generator=g)
        loss = loss_fn(TensorDict(observation=s[idx], action=a[idx], batch_size=[256]))[name]
        opt.zero_grad()
        loss.backward()
        opt.step()

    # the best Gaussian per state (maximum likelihood): the latent actor fit by NLL
    gaussian = make_latent_actor(1, 1, num_cells=(32, 32))
    opt = torch.optim.Adam(gaussian.parameters(), lr=1e-2)
    for _ in range(300):
        idx = torch.randint(0, 4096, (256,), generator=g)
        dist = gaussian.get_dist(TensorDict(observation=s[idx], batch_size=[256]))
        nll = -dist.log_prob(a[idx]).mean()
        opt.zero_grad()
        nll.backward()
        opt.step()

    with torch.no_grad():
        for state, p_up in [(-0.5, 0.2), (0.5, 0.8)]:
            obs = torch.full((4000, 1), state)
            up, down, gap = _mode_fractions(decoder.decode(obs, torch.randn(4000, 1, generator=g)))
            assert abs(up - p_up) < 0.08 and abs(down - (1 - p_up)) < 0.08, (state, up, down)
            assert gap < 0.05, (state, gap)
            g_up, g_down, g_gap = _mode_fractions(gaussian.get_dist(TensorDict(observation=obs, batch_size=[4000])).sample())
            assert g_gap > 0.25, (state, g_gap)  # a unimodal fit puts its mass between the modes


# ----------------------------------------------------------------------------- latent PPO
def _fresh_batch(policy, n=64):
    """On-policy data as a collector would store it, with given advantages and value targets."""
    with torch.no_grad():
        td = policy(TensorDict(observation=torch.randn(n, OBS), batch_size=[n]))
    td["advantage"] = torch.randn(n, 1)
    td["value_target"] = torch.randn(n, 1)
    return td


def _gorl_parts():
    actor, critic = make_latent_actor(OBS, ACT), make_value_network(OBS, num_cells=(32, 32))
    decoder = FlowDecoderModule(OBS, ACT)
    decoder.observation_norm.update(torch.randn(100, OBS))
    with torch.no_grad():  # a decoder that clearly moves the latent: velocity about -1, so a ~ z + 1
        decoder.network.output_layer.bias.fill_(-1.0)
    return actor, critic, decoder, make_gorl_policy(actor, decoder)


def test_latent_ppo_ratio_is_one_on_fresh_data_and_decoder_gets_no_gradient():
    actor, critic, decoder, policy = _gorl_parts()
    loss_fn = make_latent_ppo_loss(actor, critic, clip_epsilon=0.15, entropy_coeff=0.01, critic_coeff=0.25)
    prior = LatentPriorLoss(actor, coeff=5e-4)
    batch = _fresh_batch(policy)
    assert not torch.equal(batch["action"], batch["latent"])  # the decoder is not the identity
    out = loss_fn(batch)
    assert abs(out["mean_ratio"].item() - 1) < 1e-6
    assert abs(out["kl_approx"].item()) < 1e-6
    assert out["clip_fraction"].item() == 0
    total = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"] + prior(batch)["loss_latent_prior"]
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.parameters())
    assert all(p.grad is None for p in decoder.parameters())
    # one step moves the ratio away from 1
    torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=1e-2).step()
    assert abs(loss_fn(batch)["mean_ratio"].item() - 1) > 1e-4


def test_ppo_on_the_action_key_is_caught():
    actor, critic, _, policy = _gorl_parts()
    batch = _fresh_batch(policy)
    wrong = ClipPPOLoss(actor, critic)
    wrong.set_keys(action="action")  # runs silently since latent and action sizes agree ...
    ratio = wrong(batch)["mean_ratio"].item()
    assert abs(ratio - 1) > 0.5  # ... but the ratio is far off on fresh data
    with pytest.raises(ValueError, match="must score the latent"):
        check_latent_keys(wrong, actor)
    with pytest.raises(TypeError, match="composite"):
        make_latent_ppo_loss(policy, critic)


def test_latent_prior_loss_values():
    actor = make_latent_actor(OBS, ACT)
    data = TensorDict(observation=torch.randn(16, OBS), batch_size=[16])
    dist = actor.get_dist(data.copy())
    mu, sigma = dist.mean.detach(), dist.stddev.detach()
    l2 = LatentPriorLoss(actor, coeff=0.5)(data)["loss_latent_prior"]
    torch.testing.assert_close(l2, 0.5 * ((mu**2).mean() + (sigma**2).mean()))
    kl = LatentPriorLoss(actor, coeff=2.0, mode="kl")
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, sigma), torch.distributions.Normal(0.0, 1.0)
    ).sum(-1).mean()
    torch.testing.assert_close(kl(data)["loss_latent_prior"], 2.0 * expected)
    kl.coeff.fill_(0.0)  # a per-stage schedule changes it in place
    assert kl(data)["loss_latent_prior"] == 0
    with pytest.raises(ValueError, match="mode"):
        LatentPriorLoss(actor, mode="l1")
    with pytest.raises(ValueError, match="coeff"):
        LatentPriorLoss(actor, coeff=-1.0)
    with pytest.raises(ValueError, match="coeff"):
        LatentPriorLoss(actor, coeff=math.nan)
