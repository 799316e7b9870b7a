"""Modules: shapes and keys, exact identity decoders, samplers, state_dict, dtype, compile, bad input."""
import math

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_gorl import (
    cosine_alpha_bar,
    DiffusionDecoderModule,
    FlowDecoderModule,
    GaussianParamHead,
    make_gorl_policy,
    make_latent_actor,
    make_value_network,
    ObservationNormalizer,
    split_gorl_policy,
)

OBS, ACT = 17, 6
DECODERS = [FlowDecoderModule, DiffusionDecoderModule]


def _trained_like(decoder_cls, **kwargs):
    """A decoder with random (non-identity) weights and non-trivial observation statistics."""
    decoder = decoder_cls(OBS, ACT, **kwargs)
    decoder.observation_norm.update(torch.randn(256, OBS) * 3 + 1)
    return decoder


# ----------------------------------------------------------------------------- latent actor
def test_latent_actor_keys_and_shapes():
    actor = make_latent_actor(OBS, ACT)
    assert actor.dist_sample_keys == ["latent"]
    assert actor.log_prob_keys == ["latent_log_prob"]
    for batch in [(), (5,), (2, 3)]:
        td = actor(TensorDict(observation=torch.randn(*batch, OBS), batch_size=batch))
        assert td["latent"].shape == (*batch, ACT)
        assert td["latent_log_prob"].shape == batch
        assert td["latent_scale"].shape == (*batch, ACT)


def test_latent_actor_log_prob_entropy_and_deterministic_mode():
    actor = make_latent_actor(OBS, ACT)
    obs = torch.randn(64, OBS)
    td = actor(TensorDict(observation=obs, batch_size=[64]))
    mu, sigma, z = td["latent_loc"], td["latent_scale"], td["latent"]
    expected = (-0.5 * ((z - mu) / sigma) ** 2 - 0.5 * math.log(2 * math.pi) - sigma.log()).sum(-1)
    torch.testing.assert_close(td["latent_log_prob"], expected)
    dist = actor.get_dist(TensorDict(observation=obs, batch_size=[64]))
    torch.testing.assert_close(dist.entropy(), (0.5 + 0.5 * math.log(2 * math.pi) + sigma.log()).sum(-1))
    assert not torch.equal(z, mu)  # random by default
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        td_det = actor(TensorDict(observation=obs, batch_size=[64]))
    assert torch.equal(td_det["latent"], td_det["latent_loc"])


def test_latent_actor_scale_head_bounds_and_init():
    head = GaussianParamHead()
    raw = torch.tensor([[0.0, -1e4, 1e4], [0.0, 0.0, 0.0]]).repeat(1, 2)
    _, scale = head(raw)
    assert scale.min() >= 1e-3 and scale.max() <= 10.0
    assert torch.allclose(scale[1], torch.nn.functional.softplus(torch.zeros(3)) + 1e-3)
    actor = make_latent_actor(OBS, ACT, num_cells=(32, 32, 32, 32))
    linears = [m for m in actor.modules() if isinstance(m, torch.nn.Linear)]
    assert [lin.out_features for lin in linears] == [32, 32, 32, 32, 2 * ACT]
    for lin in linears:  # LeCun-uniform, output layer included; zero biases
        bound = math.sqrt(3.0 / lin.in_features)
        assert lin.weight.abs().max() <= bound and lin.weight.std() > 0.4 * bound
        assert torch.count_nonzero(lin.bias) == 0


def test_critic():
    critic = make_value_network(OBS, num_cells=(64, 64))
    assert critic(TensorDict(observation=torch.randn(3, OBS), batch_size=[3]))["state_value"].shape == (3, 1)


def test_latent_actor_nested_keys():
    actor = make_latent_actor(OBS, ACT, observation_key=("agent", "obs"), latent_key=("agent", "latent"))
    td = actor(TensorDict({"agent": {"obs": torch.randn(3, OBS)}}, batch_size=[3]))
    assert set(td["agent"].keys()) == {"obs", "latent", "latent_loc", "latent_scale", "latent_log_prob"}
    assert actor.log_prob_keys == [("agent", "latent_log_prob")]


# ----------------------------------------------------------------------------- normaliser
def test_observation_normalizer_running_stats_are_exact():
    data = torch.randn(1000, 4, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1, 2.0]) + 3
    norm = ObservationNormalizer(4)
    for chunk in data.split(137):
        norm.update(chunk)
    torch.testing.assert_close(norm.loc, data.mean(0).float())
    torch.testing.assert_close(norm.scale, data.std(0, unbiased=False).float())
    assert int(norm.count) == 1000
    norm.reset()
    assert torch.equal(norm(torch.ones(4)), torch.ones(4))
    with pytest.raises(ValueError, match="non-finite"):
        norm.update(torch.tensor([[float("nan"), 0.0, 0.0, 0.0]]))


def test_observation_normalizer_keeps_exact_moments_through_dtype_casts():
    norm = ObservationNormalizer(2)
    norm.update(torch.randn(10_000, 2) + 1000.0)
    mean = norm._mean.clone()
    norm.half()
    assert norm.loc.dtype == torch.float16 and norm._mean.dtype == torch.float64
    assert torch.equal(norm._mean, mean) and int(norm.count) == 10_000
    norm.double().update(torch.randn(10, 2) + 1000.0)
    assert int(norm.count) == 10_010


# ----------------------------------------------------------------------------- identity
@pytest.mark.parametrize("decoder_cls", DECODERS)
@pytest.mark.parametrize("batch", [(), (7,), (2, 3)])
def test_identity_decoder_is_exact(decoder_cls, batch):
    decoder = decoder_cls.identity(OBS, ACT)
    obs = torch.randn(*batch, OBS) * 100
    latent = torch.randn(*batch, ACT) * 10
    td = decoder(TensorDict(observation=obs, latent=latent, batch_size=batch))
    assert torch.equal(td["action"], latent)
    assert torch.equal(decoder.decode(obs, latent), latent)
    # still exact after the statistics move, and in float64
    decoder.observation_norm.update(torch.randn(64, OBS) * 4)
    assert torch.equal(decoder.double().decode(obs.double(), latent.double()), latent.double())


@pytest.mark.parametrize("decoder_cls", DECODERS)
def test_reset_to_identity(decoder_cls):
    decoder = _trained_like(decoder_cls)
    latent = torch.randn(4, ACT)
    assert not torch.equal(decoder.decode(torch.randn(4, OBS), latent), latent)
    decoder.reset_to_identity()
    assert torch.equal(decoder.decode(torch.randn(4, OBS), latent), latent)


# ----------------------------------------------------------------------------- samplers
def test_flow_sampler_is_explicit_euler_from_t1():
    decoder = _trained_like(FlowDecoderModule, num_steps=4)
    obs, z = torch.randn(8, OBS), torch.randn(8, ACT)
    x = z
    for t in [1.0, 0.75, 0.5, 0.25]:
        x = x - 0.25 * decoder.velocity(obs, x, torch.full((8, 1), t))
    torch.testing.assert_close(decoder.decode(obs, z), x)


def test_diffusion_sampler_is_ddim_with_epsilon_prediction():
    """The skip-parametrised update must equal the textbook deterministic DDIM step."""
    decoder = _trained_like(DiffusionDecoderModule)
    abar = decoder.alpha_bar.double()
    obs, z = torch.randn(8, OBS), torch.randn(8, ACT)
    x = z.double()
    for t in range(9, 0, -1):
        eps = decoder.predict_noise(obs, x.float(), torch.full((8, 1), t)).double()
        x0 = (x - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()
        x = abar[t - 1].sqrt() * x0 + (1 - abar[t - 1]).sqrt() * eps
    torch.testing.assert_close(decoder.decode(obs, z).double(), x, atol=1e-4, rtol=1e-4)


def test_cosine_schedule_values():
    expected = [1.0, 0.97209, 0.89871, 0.78691, 0.64748, 0.49384, 0.34081, 0.20312, 0.09405, 0.02409]
    torch.testing.assert_close(DiffusionDecoderModule(3, 2).alpha_bar, torch.tensor(expected), atol=1e-5, rtol=0)


def test_state_dict_carries_the_sampler_settings():
    with pytest.raises(ValueError, match=r"saved with sampler settings \{'num_diffusion_steps': 20\}"):
        DiffusionDecoderModule(OBS, ACT).load_state_dict(DiffusionDecoderModule(OBS, ACT, num_diffusion_steps=20).state_dict())
    with pytest.raises(ValueError, match="num_steps"):
        FlowDecoderModule(OBS, ACT, num_steps=10).load_state_dict(FlowDecoderModule(OBS, ACT, num_steps=4).state_dict())


def test_diffusion_schedule_is_exact_in_float64():
    decoder = DiffusionDecoderModule(OBS, ACT).double()
    assert decoder.alpha_bar.dtype == torch.float64
    torch.testing.assert_close(decoder.alpha_bar[1:], cosine_alpha_bar(10)[1:], atol=0, rtol=1e-15)
    assert decoder.float().skip_coef.dtype == torch.float32


# ----------------------------------------------------------------------------- round trips, dtype, compile
def _deterministic_outputs(module, obs, latent):
    if isinstance(module, (FlowDecoderModule, DiffusionDecoderModule)):
        return module.decode(obs, latent)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        td = module(TensorDict(observation=obs, batch_size=obs.shape[:-1]))
    return td.get(module.out_keys[0])


@pytest.mark.parametrize(
    "factory",
    [
        lambda: make_latent_actor(OBS, ACT),
        lambda: make_value_network(OBS),
        lambda: _trained_like(FlowDecoderModule),
        lambda: _trained_like(DiffusionDecoderModule),
    ],
    ids=["latent_actor", "critic", "flow", "diffusion"],
)
def test_state_dict_round_trip_and_dtype(factory):
    obs, latent = torch.randn(16, OBS), torch.randn(16, ACT)
    torch.manual_seed(0)
    source = factory()
    torch.manual_seed(1)
    target = factory()
    assert not torch.equal(_deterministic_outputs(source, obs, latent), _deterministic_outputs(target, obs, latent))
    target.load_state_dict(source.state_dict())
    assert torch.equal(_deterministic_outputs(source, obs, latent), _deterministic_outputs(target, obs, latent))
    reference = _deterministic_outputs(source, obs, latent)
    as_double = target.to(torch.float64)
    out = _deterministic_outputs(as_double, obs.double(), latent.double())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.float(), reference, atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("decoder_cls", DECODERS)
def test_decoder_on_cuda(decoder_cls):
    decoder = _trained_like(decoder_cls)
    obs, z = torch.randn(16, OBS), torch.randn(16, ACT)
    expected = decoder.decode(obs, z)
    torch.testing.assert_close(decoder.to("cuda").decode(obs.cuda(), z.cuda()).cpu(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("decoder_cls", DECODERS)
def test_decoder_under_torch_compile(decoder_cls):
    decoder = _trained_like(decoder_cls)
    obs, z = torch.randn(32, OBS), torch.randn(32, ACT)
    eager = decoder.decode(obs, z)
    # graph capture is exact; inductor's fused kernels may round differently in the last ulp
    assert torch.equal(torch.compile(decoder.decode, backend="aot_eager")(obs, z), eager)
    torch.testing.assert_close(torch.compile(decoder.decode)(obs, z), eager, atol=1e-6, rtol=1e-6)
    identity = decoder_cls.identity(OBS, ACT)
    assert torch.equal(torch.compile(identity.decode)(obs, z), z)


# ----------------------------------------------------------------------------- policy
def test_gorl_policy_composition_and_parts():
    actor, decoder = make_latent_actor(OBS, ACT), _trained_like(FlowDecoderModule)
    policy = make_gorl_policy(actor, decoder)
    td = policy(TensorDict(observation=torch.randn(4, OBS), batch_size=[4]))
    assert {"latent", "latent_log_prob", "action"} <= set(td.keys())
    torch.testing.assert_close(td["action"], decoder.decode(td["observation"], td["latent"]))
    assert split_gorl_policy(policy) == (actor, decoder)
    assert policy.latent_actor is actor and policy.decoder is decoder


def test_gorl_policy_rejects_mismatches():
    with pytest.raises(ValueError, match="latent size 4"):
        make_gorl_policy(make_latent_actor(OBS, 4), FlowDecoderModule(OBS, ACT))
    with pytest.raises(ValueError, match="'z'"):
        make_gorl_policy(make_latent_actor(OBS, ACT), FlowDecoderModule(OBS, ACT, latent_key="z"))
    with pytest.raises(TypeError, match="latent_actor"):
        make_gorl_policy(make_value_network(OBS), FlowDecoderModule(OBS, ACT))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("decoder_cls", DECODERS)
def test_decoder_bad_input(decoder_cls):
    decoder = decoder_cls(OBS, ACT)
    with pytest.raises(ValueError, match="observation must have a last dimension of size 17"):
        decoder.decode(torch.randn(3, OBS + 1), torch.randn(3, ACT))
    with pytest.raises(ValueError, match="latent must have a last dimension of size 6"):
        decoder.decode(torch.randn(3, OBS), torch.randn(3, ACT - 1))
    with pytest.raises(KeyError, match="latent"):
        decoder(TensorDict(observation=torch.randn(3, OBS), batch_size=[3]))
    with pytest.raises(ValueError, match="observation_dim"):
        decoder_cls(0, ACT)
    with pytest.raises(ValueError, match=r"num_cells\[1\]"):
        decoder_cls(OBS, ACT, num_cells=(64, -1))


def test_bad_step_counts():
    with pytest.raises(ValueError, match="num_steps must be a positive integer, got 0"):
        FlowDecoderModule(OBS, ACT, num_steps=0)
    with pytest.raises(ValueError, match="num_diffusion_steps must be at least 2"):
        DiffusionDecoderModule(OBS, ACT, num_diffusion_steps=1)


def test_latent_actor_bad_input():
    actor = make_latent_actor(OBS, ACT)
    with pytest.raises(ValueError, match="observation must have a last dimension of size 17"):
        actor(TensorDict(observation=torch.randn(3, 5), batch_size=[3]))
    with pytest.raises(ValueError, match="latent_dim"):
        make_latent_actor(OBS, 0)
    with pytest.raises(ValueError, match="scale_min"):
        make_latent_actor(OBS, ACT, scale_min=1.0, scale_max=0.5)
