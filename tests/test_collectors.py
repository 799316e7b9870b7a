"""The GoRL policy in TorchRL's multi-process collector over BatchedDMControlEnv (make_env's default):
weights and statistics reach the workers, also into a compiled policy (``collector.compile_policy``), which draws
the eager policy's noise."""
import functools

import pytest
import torch
from tensordict import TensorDict
from torch._dynamo.utils import counters
from torchrl._utils import compile_with_warmup
from torchrl.collectors import Collector
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_gorl import FlowDecoderModule, make_gorl_policy, make_latent_actor
from torchrl_gorl.collectors import POLICY_COMPILE
from torchrl_gorl.envs import make_env


@pytest.mark.parametrize("compile_policy", [None, POLICY_COMPILE], ids=["eager", "compiled"])
def test_multi_sync_collector_over_batched_envs_syncs_decoder_weights_and_statistics(compile_policy):
    """Compiled in the workers (``collector.compile_policy``), the policy reads the weights and statistics synced in
    place: its graphs take them as inputs."""
    actor, decoder = make_latent_actor(17, 6), FlowDecoderModule.identity(17, 6)
    policy = make_gorl_policy(actor, decoder)
    collector = Collector(
        [functools.partial(make_env, "cheetah-run", 2)] * 2,
        policy,
        num_collectors=2,
        sync=True,
        frames_per_batch=200,
        total_frames=-1,
        auto_register_policy_transforms=False,
        compile_policy=compile_policy,
    )
    try:
        batches = iter(collector)
        data = next(batches)
        assert data.shape[-1] * data.shape[:-1].numel() == 200
        assert torch.equal(data["action"], data["latent"])  # the workers run the identity decoder
        # a "refit": new weights loaded in place and new observation statistics, then a sync
        trained = FlowDecoderModule(17, 6)
        trained.observation_norm.update(torch.randn(500, 17) * 2 + 1)
        decoder.load_state_dict(trained.state_dict())
        collector.update_policy_weights_()
        data = next(batches)
        with torch.no_grad():
            expected = decoder.decode(data["observation"], data["latent"])
        torch.testing.assert_close(data["action"], expected)
        assert not torch.equal(data["action"], data["latent"])
    finally:
        collector.shutdown()


def test_compiled_policy_draws_the_eager_noise():
    """``POLICY_COMPILE`` as TorchRL's collectors apply it: compiled at the first call, with inductor's
    ``fallback_random`` the latent noise comes from the same generator stream as the eager policy's, so a compiled
    and an eager policy of the same seed take the same actions up to float rounding."""
    torch.manual_seed(0)
    trained = FlowDecoderModule(17, 6)
    policy = make_gorl_policy(make_latent_actor(17, 6), trained)
    compiled = compile_with_warmup(policy, **POLICY_COMPILE)
    observation = TensorDict(observation=torch.randn(16, 17), batch_size=[16])
    graphs = counters["stats"]["unique_graphs"]
    with torch.no_grad(), set_exploration_type(ExplorationType.RANDOM):  # as in collection
        for _ in range(2):  # the first call compiles; the second runs the compiled graph
            torch.manual_seed(1)
            eager = policy(observation.clone())
            torch.manual_seed(1)
            out = compiled(observation.clone())
            for key in ("latent", "latent_log_prob", "action"):
                torch.testing.assert_close(out[key], eager[key])
    assert not torch.equal(eager["latent"], eager["latent_loc"])  # the latents are sampled
    assert counters["stats"]["unique_graphs"] > graphs  # and the compiled policy did compile


def test_resumable_collector_saves_running_envs_only_where_it_can_restore_them():
    """The carried observations go into the state only with the env state they belong to: TorchRL's env path has
    none, and its collector resumes with fresh episodes, as TorchRL's does."""
    from torchrl_gorl.collectors import ResumableCollector

    policy = make_gorl_policy(make_latent_actor(17, 6), FlowDecoderModule.identity(17, 6))
    for backend, saved in (("batched", True), ("serial", False)):
        collector = ResumableCollector(make_env("cheetah-run", 2, backend=backend, seed=0), policy, frames_per_batch=20,
                                       total_frames=-1, auto_register_policy_transforms=False)
        try:
            next(iter(collector))
            state = collector.state_dict()
            assert ("carrier" in state, "env_runtime" in state) == (saved, saved), backend
        finally:
            collector.shutdown()
