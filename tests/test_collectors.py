"""The GoRL policy in TorchRL's multi-process collector over BatchedDMControlEnv (make_env's default):
weights and statistics reach the workers, also into a compiled policy (``collector.compile_policy``), which draws
the eager policy's noise."""
import contextlib
import copy
import functools
import os
import signal
import time

import pytest
import torch
from tensordict import TensorDict
from torch._dynamo.utils import counters
from torchrl._utils import compile_with_warmup
from torchrl.collectors import Collector
from torchrl.envs.utils import ExplorationType, set_exploration_type

from torchrl_gorl import FlowDecoderModule, make_gorl_policy, make_latent_actor
from torchrl_gorl.collectors import POLICY_COMPILE, CollectorWorkerDied, MonitoredMultiSyncCollector, SeededCollector
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


class _Hung(BaseException):
    """Raised by :func:`_deadline`; not an ``Exception``, which TorchRL's waits catch (its weight sync's wait for
    acknowledgments logs any and returns; its batch loop catches ``TimeoutError``)."""


@contextlib.contextmanager
def _deadline(seconds: float):
    """Fails a block still running after ``seconds`` (SIGALRM: interrupts blocking queue and pipe waits) rather
    than hanging the test session."""
    def expired(*_):
        raise _Hung(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _two_workers(policy, cls=MonitoredMultiSyncCollector, **kwargs):
    """2 worker processes of 2 cheetah-run envs each, 20 env steps a batch, as make_collector builds them."""
    kwargs = dict(frames_per_batch=20, total_frames=-1, auto_register_policy_transforms=False,
                  collector_class=SeededCollector, **kwargs)
    env_fns = [functools.partial(make_env, "cheetah-run", 2)] * 2
    return cls(env_fns, policy, **kwargs) if cls is not Collector else cls(env_fns, policy, num_collectors=2, sync=True,
                                                                         **kwargs)


@pytest.mark.parametrize("call", ["next", "update_policy_weights_"])
def test_killed_worker_stops_the_collector_naming_it(call):
    """``kill -9`` of one worker (as the OOM killer does): the collector's next call raises, naming the worker, its pid
    and the signal, within seconds. TorchRL 0.14.1's own ``update_policy_weights_`` would wait for the dead
    worker's acknowledgment for ever."""
    collector = _two_workers(make_gorl_policy(make_latent_actor(17, 6), FlowDecoderModule(17, 6)))
    try:
        batches = iter(collector)
        next(batches)
        pid = collector.worker_pids[1]
        os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        with _deadline(10), pytest.raises(CollectorWorkerDied) as raised:
            next(batches) if call == "next" else collector.update_policy_weights_()
        assert time.monotonic() - started < 10
        assert str(raised.value).startswith(f"collector worker 1 (pid {pid}) died: killed by SIGKILL (signal 9)")
        assert isinstance(raised.value, RuntimeError)
    finally:
        collector.shutdown(raise_on_error=False)


def test_workers_ignore_sigint():
    """Ctrl-C reaches the whole foreground process group: the workers keep collecting (the main process handles it,
    and then shuts them down), and the main process's SIGINT handler is its own again after construction."""
    handler = signal.getsignal(signal.SIGINT)
    collector = _two_workers(make_gorl_policy(make_latent_actor(17, 6), FlowDecoderModule(17, 6)))
    try:
        assert signal.getsignal(signal.SIGINT) is handler
        batches = iter(collector)
        next(batches)
        for pid in collector.worker_pids:
            os.kill(pid, signal.SIGINT)
        time.sleep(0.5)
        with _deadline(30):
            assert next(batches).numel() == 20
            collector.update_policy_weights_()
            assert next(batches).numel() == 20
        assert all(proc.is_alive() for proc in collector.procs)
    finally:
        collector.shutdown(raise_on_error=False)


def test_monitored_collector_collects_torchrls_batches():
    """Bit for bit the batches of TorchRL's own multi-process sync collector, seeded alike, across a weight sync.

    Trajectory ids excepted: TorchRL's workers draw them from a shared counter, first come first served, so which
    worker's envs get which ids is a race; the steps that share an id are the same."""
    torch.manual_seed(0)
    actor, decoder = make_latent_actor(17, 6), FlowDecoderModule(17, 6)
    policy = make_gorl_policy(actor, decoder)
    initial = copy.deepcopy(decoder.state_dict())
    trained = FlowDecoderModule(17, 6).state_dict()
    runs = []
    for cls in (Collector, MonitoredMultiSyncCollector):
        decoder.load_state_dict(initial)
        collector = _two_workers(policy, cls, reset_at_each_iter=False)
        try:
            collector.set_seed(7)
            batches, run = iter(collector), []
            for i in range(3):
                if i == 2:  # a refit, synced to the workers
                    decoder.load_state_dict(trained)
                    collector.update_policy_weights_()
                with torch.random.fork_rng():
                    torch.manual_seed(i)
                    run.append(next(batches))
        finally:
            collector.shutdown()
        runs.append(run)
    traj_ids = ("collector", "traj_ids")
    for expected, batch in zip(*runs):
        assert set(batch.keys(True, True)) == set(expected.keys(True, True))
        for key, value in expected.items(True, True):
            assert key == traj_ids or torch.equal(batch[key], value), key

    def trajectories(run):  # each step's trajectory, numbered in order of first appearance
        numbers = {}
        return [numbers.setdefault(i, len(numbers)) for batch in run for i in batch[traj_ids].flatten().tolist()]

    assert trajectories(runs[1]) == trajectories(runs[0])
    assert not torch.equal(runs[0][0]["observation"], runs[0][1]["observation"])  # the envs ran on


def test_an_error_before_shutdown_does_not_hang_the_exit():
    """A script that fails after building the collector (a refused checkpoint, a crash mid-run) exits with its
    error: the workers would wait for commands, and ``multiprocessing`` joins them at exit, for ever."""
    import subprocess
    import sys

    script = (
        "import functools\n"
        "from torchrl_gorl import FlowDecoderModule, make_gorl_policy, make_latent_actor\n"
        "from torchrl_gorl.collectors import MonitoredMultiSyncCollector\n"
        "from torchrl_gorl.envs import make_env\n"
        "if __name__ == '__main__':\n"
        "    policy = make_gorl_policy(make_latent_actor(17, 6), FlowDecoderModule(17, 6))\n"
        "    collector = MonitoredMultiSyncCollector([functools.partial(make_env, 'cheetah-run', 2)] * 2, policy,\n"
        "        frames_per_batch=20, total_frames=-1, auto_register_policy_transforms=False)\n"
        "    next(iter(collector))\n"
        "    raise ValueError('refused')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "ValueError: refused" in result.stderr
