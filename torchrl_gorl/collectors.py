"""TorchRL collectors whose state dict resumes running envs exactly, one for a process of its own (a worker
process or Ray actor) whose seeding and state cover the policy's sampling too, and TorchRL's multi-process sync
collector with workers that ignore Ctrl-C and whose death stops the run with an error naming them."""
from __future__ import annotations

import atexit
import contextlib
import functools
import multiprocessing.connection
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from queue import Empty
from typing import Any, Literal

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.collectors import Collector, MultiSyncCollector
from torchrl.envs import EnvBase, EnvCreator, TransformedEnv
from torchrl.weight_update import SharedMemWeightSyncScheme

#: ``compile_policy`` settings for TorchRL's collectors that keep a collection exact and resumable:
#:
#: * ``warmup=0``: compiled at the first call, whatever makes it. TorchRL's default (``warmup=1``) runs the first call
#:   eagerly; that is the collector's own probe of the policy's outputs at construction today, but whether a step
#:   gets eager or compiled floats should not depend on how many calls came before it (a resumed collector must
#:   step as the uninterrupted one).
#: * ``dynamic=False``: a collector's batch shape is fixed.
#: * inductor's ``fallback_random``: the sampling noise comes from aten's generator, the stream the eager policy draws
#:   and the collectors' state dicts save, so a compiled and an eager policy sample the same noise.
#:
#: Compiled and eager policies agree to float precision, not bit for bit. The gain is in overhead, not FLOPs: a
#: policy of small layers (the GoRL policy's 10 Euler steps) spends most of an eager call in Python and dispatch
#: (docs/performance.md, "Collection"). Use: ``Collector(env, policy, ..., compile_policy=POLICY_COMPILE)``.
POLICY_COMPILE: dict[str, Any] = {"warmup": 0, "dynamic": False, "options": {"fallback_random": True}}


class ResumableCollector(Collector):
    """A :class:`~torchrl.collectors.Collector` whose :meth:`state_dict` resumes the running envs exactly.

    TorchRL's collector state holds the transforms' state, the policy and the frame counters; after
    ``load_state_dict`` it starts fresh trajectories (``Collector.load_state_dict``: "runtime environment state is
    not generally serializable"). With envs that run on across batches (``reset_at_each_iter=False``) that makes a
    resumed run diverge from the uninterrupted one. This collector adds

    * ``"env_runtime"``: the base env's ``runtime_state()``
      (:meth:`~torchrl_gorl.envs.BatchedDMControlEnv.runtime_state`: physics, task random state, step counts);
    * ``"carrier"``: the TensorDict it carries between steps (the current observations, and the step counts and
      running returns that transforms such as ``StepCounter`` and ``RewardSum`` keep there).

    Both only when the base env has ``runtime_state``; with any other env the state is TorchRL's and a loaded
    collector starts fresh episodes, as TorchRL's does.

    Keyword Args:
        **kwargs: the :class:`~torchrl.collectors.Collector` arguments.

    Examples:
        >>> import torch
        >>> from torchrl_gorl import make_gorl_policy, make_latent_actor, FlowDecoderModule
        >>> from torchrl_gorl.collectors import ResumableCollector
        >>> from torchrl_gorl.envs import make_env
        >>> def build():
        ...     torch.manual_seed(0)
        ...     policy = make_gorl_policy(make_latent_actor(17, 6), FlowDecoderModule.identity(17, 6))
        ...     return ResumableCollector(make_env("cheetah-run", 2, seed=0), policy, frames_per_batch=20,
        ...                               total_frames=-1, auto_register_policy_transforms=False)
        >>> collector = build(); batches = iter(collector); _ = next(batches)
        >>> state = collector.state_dict()
        >>> _ = torch.manual_seed(1); expected = next(batches)
        >>> resumed = build(); resumed.load_state_dict(state)
        >>> _ = torch.manual_seed(1); torch.equal(next(iter(resumed))["observation"], expected["observation"])
        True
        >>> collector.shutdown(); resumed.shutdown()
    """

    def _base_env(self):
        return self.env.base_env if isinstance(self.env, TransformedEnv) else self.env

    def stagger_episodes(self, seed: int) -> None:
        """Cuts each env's current (freshly reset) episode short by a random number of steps in ``[0, time_limit)``,
        drawn from ``seed`` (stratified: one env in each ``time_limit / num_envs`` slice), so that envs started
        together do not stay in lockstep.

        Without terminations (cheetah, walker, finger) envs reset together all reach the time limit together, for
        ever: with envs that run on across batches, each batch of ``T`` steps then holds one phase of the episode
        (the first ``T`` steps of every env, then the next ``T``, ...), and the PPO updates cycle through them.
        Staggered, every batch mixes all phases. The base env must have ``set_episode_progress`` and
        ``time_limit`` (:class:`~torchrl_gorl.envs.BatchedDMControlEnv`); ``StepCounter``'s count follows.
        """
        base = self._base_env()
        # stratified: one offset in each of num_envs equal slices of the episode, in a random order
        generator, n = torch.Generator().manual_seed(seed), base.num_envs
        slices = torch.randperm(n, generator=generator) + torch.rand(n, generator=generator)
        progress = (slices * base.time_limit / n).long().clamp_max(base.time_limit - 1)
        base.set_episode_progress(progress.tolist())
        if "step_count" in self._carrier.keys():
            count = self._carrier.get("step_count")
            self._carrier.set("step_count", progress.to(count).view_as(count))

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        # the carried observations are only valid with the env state they came from: an env without a runtime
        # state resumes with fresh episodes, and so must the collector
        if hasattr(self._base_env(), "runtime_state"):
            state["carrier"] = self._carrier.to_dict()  # plain tensors: TorchRL's worker pipes send dicts
            state["env_runtime"] = self._base_env().runtime_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any], **kwargs: Any) -> None:
        state = dict(state_dict)
        carrier: dict | TensorDictBase | None = state.pop("carrier", None)
        runtime = state.pop("env_runtime", None)
        super().load_state_dict(state, **kwargs)
        if runtime is not None:
            self._base_env().load_runtime_state(runtime)
        if carrier is not None:
            carrier = TensorDict(dict(carrier), batch_size=self._carrier.batch_size)
            self._carrier.update(carrier if self._carrier.device is None else carrier.to(self._carrier.device))


class SeededCollector(ResumableCollector):
    """A :class:`ResumableCollector` whose :meth:`set_seed` seeds the torch RNG of its process too, and whose
    state dict carries that RNG's state.

    ``Collector.set_seed`` seeds the envs only; the policy's sampling (the GoRL latent noise) draws from the
    process's torch RNG. In the trainer's process the scripts seed that RNG themselves around each batch; in a
    remote worker (``collector.backend=ray`` runs one of these per Ray actor) nothing else can, so this
    collector does: with ``reset_at_each_iter=True``, a batch is then a function of the policy and the seed. With
    envs that run on, the sampling RNG moves on with them, so :meth:`state_dict` saves it (``"torch_rng"``, and
    ``"cuda_rng"`` once CUDA is in use) next to the envs' runtime state. Use it only where it owns the process:
    ``torch.manual_seed`` is process-wide.

    Keyword Args:
        num_threads (int, optional): torch intra-op threads of the process, set at construction (a worker
            stepping batched envs with a small policy runs fastest on one). ``None`` leaves them as they are.
        stagger_episodes (bool): with envs that run on (``reset_at_each_iter=False``), :meth:`stagger_episodes`
            after every full :meth:`reset` that follows a :meth:`set_seed` (with that seed). Defaults to ``False``.
        **kwargs: the :class:`~torchrl.collectors.Collector` arguments.

    Examples:
        >>> import torch
        >>> from torchrl_gorl import FlowDecoderModule, make_gorl_policy, make_latent_actor
        >>> from torchrl_gorl.collectors import SeededCollector
        >>> from torchrl_gorl.envs import make_env
        >>> policy = make_gorl_policy(make_latent_actor(17, 6), FlowDecoderModule(17, 6))
        >>> collector = SeededCollector(make_env("cheetah-run", 2), policy, frames_per_batch=20, total_frames=-1,
        ...                             reset_at_each_iter=True, auto_register_policy_transforms=False)
        >>> batches = iter(collector)
        >>> _ = collector.set_seed(3); first = next(batches)
        >>> _ = torch.randn(5)  # the process's RNG moves on between batches
        >>> _ = collector.set_seed(3); torch.equal(first["latent"], next(batches)["latent"])
        True
        >>> collector.shutdown()
    """

    def __init__(self, *args: Any, num_threads: int | None = None, stagger_episodes: bool = False,
                 **kwargs: Any) -> None:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self._stagger, self._seed = stagger_episodes, None
        super().__init__(*args, **kwargs)

    def set_seed(self, seed: int, static_seed: bool = False) -> int:
        torch.manual_seed(seed)
        self._seed = seed
        out = super().set_seed(seed, static_seed=static_seed)
        if not self.reset_at_each_iter:  # seeding resets the envs: the observations the collector carries must follow
            self.reset()
        return out

    def reset(self, index=None, **kwargs: Any) -> None:
        super().reset(index, **kwargs)
        # TorchRL's multi-process collector resets its workers after seeding them: stagger after every full reset
        if index is None and self._stagger and not self.reset_at_each_iter and self._seed is not None:
            self.stagger_episodes(self._seed)

    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(), "torch_rng": torch.get_rng_state()}
        if torch.cuda.is_initialized():  # a policy on the GPU samples from the CUDA generators
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any], **kwargs: Any) -> None:
        state = dict(state_dict)
        rng, cuda_rng = state.pop("torch_rng", None), state.pop("cuda_rng", None)
        super().load_state_dict(state, **kwargs)
        if rng is not None:
            torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ignores SIGINT (Ctrl-C) in this process while the block runs, then restores the previous handler.

    Processes started inside the block ignore SIGINT for good: ``SIG_IGN`` is inherited across ``fork`` and
    ``exec``, and Python keeps an ignored SIGINT ignored at start-up (it installs its ``KeyboardInterrupt`` handler
    only over the default action). Ctrl-C in a terminal sends SIGINT to the whole foreground process group, workers
    included; started inside this block, they keep running until the main process, which handles the Ctrl-C, shuts
    them down. A Ctrl-C while the block runs is lost. Off the main thread (where handlers cannot be set) it does
    nothing.

    Examples:
        >>> import signal
        >>> from torchrl_gorl.collectors import sigint_ignored
        >>> before = signal.getsignal(signal.SIGINT)
        >>> with sigint_ignored():
        ...     signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        True
        >>> signal.getsignal(signal.SIGINT) is before
        True
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:  # None: a handler not set from Python, which cannot be put back
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


#: seconds between checks of the workers while :class:`MonitoredMultiSyncCollector` waits for their weight
#: acknowledgments (TorchRL checks them each second while it waits for a batch)
WORKER_POLL_S = 1.0


class CollectorWorkerDied(RuntimeError):
    """A worker process of a :class:`MonitoredMultiSyncCollector` ended while the collector was running."""


def _exit_reason(exitcode: int) -> str:
    if exitcode >= 0:
        return f"exited with code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = "an unknown signal"
    hint = " (kill -9, or the kernel's out-of-memory killer)" if -exitcode == signal.SIGKILL else ""
    return f"killed by {name} (signal {-exitcode}){hint}"


class MonitoredMultiSyncCollector(MultiSyncCollector):
    """TorchRL's :class:`~torchrl.collectors.MultiSyncCollector` (what ``Collector(create_env_fns, policy,
    num_collectors=n, sync=True, ...)`` builds; same arguments, less ``num_collectors`` and ``sync``), made safe to
    kill anywhere:

    * A worker that dies alone (``kill -9`` of its pid, the OOM killer, a crash) stops the collector's next call
      within about :data:`WORKER_POLL_S` seconds with :class:`CollectorWorkerDied` (a ``RuntimeError``):
      ``"collector worker {i} (pid {pid}) died: killed by SIGKILL (signal 9) ..."``. TorchRL 0.14.1 itself checks
      its workers while it waits for a batch (raising an error without pid or signal) and raises a bare
      ``BrokenPipeError`` in ``state_dict``; but ``update_policy_weights_`` (the default
      :class:`~torchrl.weight_update.SharedMemWeightSyncScheme`) waits for every worker's acknowledgment without
      a timeout, for ever once one is dead. Here that wait polls the acknowledgment queues and checks the workers
      every :data:`WORKER_POLL_S` seconds; the rest names the dead workers in TorchRL's errors. Nothing is added
      on the data path: batches are TorchRL's, bit for bit.
    * The workers ignore SIGINT (:func:`sigint_ignored` while TorchRL starts them, at construction): a Ctrl-C in
      the terminal reaches the main process alone in effect, which can write a last checkpoint (the collector's
      state dict included) before it shuts the collector down. Stop the workers with :meth:`shutdown`.
    * An error that ends the process before :meth:`shutdown` does not hang its exit: the workers wait for commands
      and ``multiprocessing`` joins them at exit, so an exit hook shuts the collector down first.

    Examples:
        >>> import functools, os, signal, time
        >>> from torchrl_gorl import FlowDecoderModule, make_gorl_policy, make_latent_actor
        >>> from torchrl_gorl.collectors import CollectorWorkerDied, MonitoredMultiSyncCollector
        >>> from torchrl_gorl.envs import make_env
        >>> policy = make_gorl_policy(make_latent_actor(17, 6), FlowDecoderModule.identity(17, 6))
        >>> collector = MonitoredMultiSyncCollector([functools.partial(make_env, "cheetah-run", 2)] * 2, policy,
        ...     frames_per_batch=20, total_frames=-1, auto_register_policy_transforms=False)
        >>> batches = iter(collector); _ = next(batches)
        >>> os.kill(collector.worker_pids[0], signal.SIGINT); time.sleep(0.5)  # Ctrl-C: ignored
        >>> next(batches).numel()
        20
        >>> os.kill(collector.worker_pids[1], signal.SIGKILL)
        >>> next(batches)
        Traceback (most recent call last):
        ...
        torchrl_gorl.collectors.CollectorWorkerDied: collector worker 1 (pid ...) died: killed by SIGKILL (signal 9) ...
        >>> collector.shutdown()
    """

    #: the workers' pids, by index, as they started
    worker_pids: list[int]

    def _run_processes(self) -> None:  # TorchRL starts the workers here, in __init__
        with sigint_ignored():
            super()._run_processes()
        self.worker_pids = [proc.pid for proc in self.procs]
        atexit.register(self._shutdown_at_exit)  # runs before multiprocessing's join of the workers (LIFO)

    def _shutdown_at_exit(self) -> None:
        with contextlib.suppress(Exception):  # the process is ending on an error already
            self.shutdown()

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        atexit.unregister(self._shutdown_at_exit)
        try:
            return super().shutdown(*args, **kwargs)
        finally:
            # TorchRL leaves its weight-sync schemes to __del__, whose "stop" message may start a queue thread: at
            # interpreter exit that thread never starts and the process hangs. Stopped here, while it can.
            for scheme in (getattr(self, "_weight_sync_schemes", None) or {}).values():
                with contextlib.suppress(Exception):
                    scheme.shutdown()

    def dead_workers(self, timeout: float = 0.0) -> str | None:
        """What ended the workers that are no longer running (``"collector worker 1 (pid 123) died: ..."``, one
        per dead worker, joined by ``"; "``), or ``None`` where all run; waits up to ``timeout`` seconds for one
        to end."""
        procs = []
        for i, proc in enumerate(getattr(self, "procs", ())):
            with contextlib.suppress(ValueError):  # a closed process: TorchRL stopped it after another one died
                procs.append((i, proc, proc.sentinel))
        ended = multiprocessing.connection.wait([sentinel for *_, sentinel in procs], timeout=timeout)
        dead = []
        for i, proc, sentinel in procs:
            if sentinel in ended:
                proc.join(timeout=1.0)  # its pipes close just before it can be reaped
            if proc.exitcode is not None:
                dead.append(f"collector worker {i} (pid {proc.pid}) died: {_exit_reason(proc.exitcode)}")
        return "; ".join(dead) or None

    @contextlib.contextmanager
    def _naming_dead_workers(self) -> Iterator[None]:
        """Raises :class:`CollectorWorkerDied` in place of an error that a dead worker caused."""
        try:
            yield
        except CollectorWorkerDied:
            raise
        except Exception as err:
            # TorchRL's RuntimeError follows a death it saw; a broken pipe may come just before the death shows
            failure = self.dead_workers(timeout=1.0 if isinstance(err, (EOFError, OSError)) else 0.0)
            if failure is None:
                raise
            raise CollectorWorkerDied(failure) from err

    def iterator(self) -> Iterator[TensorDictBase]:
        with self._naming_dead_workers():
            yield from super().iterator()

    def set_seed(self, seed: int, static_seed: bool = False) -> int:
        with self._naming_dead_workers():
            return super().set_seed(seed, static_seed)

    def reset(self, reset_idx=None) -> None:
        with self._naming_dead_workers():
            return super().reset(reset_idx)

    def state_dict(self):
        with self._naming_dead_workers():
            return super().state_dict()

    def load_state_dict(self, state_dict) -> None:
        with self._naming_dead_workers():
            return super().load_state_dict(state_dict)

    def update_policy_weights_(self, *args: Any, **kwargs: Any) -> None:
        with self._naming_dead_workers():
            return super().update_policy_weights_(*args, **kwargs)

    def _send_weights_scheme(self, *, model_id, scheme, processed_weights, worker_ids) -> None:
        if not (isinstance(scheme, SharedMemWeightSyncScheme) and scheme.sync) or isinstance(processed_weights, dict):
            return super()._send_weights_scheme(model_id=model_id, scheme=scheme, processed_weights=processed_weights,
                                                worker_ids=worker_ids)
        # TorchRL's send: the weights into shared memory, a "receive" to each worker, then (sync) a wait for the
        # acknowledgments with no timeout. Sent without that wait, the acknowledgments are awaited here.
        scheme.sync = False
        try:
            super()._send_weights_scheme(model_id=model_id, scheme=scheme, processed_weights=processed_weights,
                                         worker_ids=worker_ids)
        finally:
            scheme.sync = True
        if worker_ids is None:
            worker_ids = list(scheme._ack_queues)
        for i in [worker_ids] if isinstance(worker_ids, int) else worker_ids:
            while True:
                try:
                    scheme._ack_queues[i].get(timeout=WORKER_POLL_S)
                    break
                except Empty:
                    failure = self.dead_workers()  # no acknowledgment yet: is the worker still there?
                    if failure is not None:
                        raise CollectorWorkerDied(failure)



def make_collector(create_env: Callable[[int], EnvBase], policy: Callable, *, num_envs: int,
                   frames_per_batch: int, num_workers: int = 0, backend: Literal["local", "ray"] = "local",
                   full_episodes: bool = True, seed: int | None = None, stagger_episodes: bool = False,
                   compile_policy: bool = False, device: torch.device | str = "cpu",
                   env_device: torch.device | str = "cpu", ray_address: str | None = None):
    """A collector of ``frames_per_batch`` env steps from ``num_envs`` envs per batch, endless.

    ``create_env(n)`` builds ``n`` batched envs and must be picklable (``functools.partial`` of a module-level
    function): each worker builds its ``num_envs / num_workers``.

    * ``backend="local"``, ``num_workers=0``: a :class:`ResumableCollector` in this process.
    * ``backend="local"``, ``num_workers > 0``: TorchRL's multi-process sync collector
      (:class:`MonitoredMultiSyncCollector`: workers that ignore Ctrl-C, and a worker's death raises within seconds,
      naming it) of :class:`SeededCollector` workers, whose state dicts carry their sampling RNG too.
    * ``backend="ray"``: ``num_workers`` Ray actors (:func:`make_ray_collector`).

    With ``full_episodes`` every batch is one full episode per env, all envs reset (after reseeding, see
    :func:`collect_batch`) at each batch: each batch is a function of the policy and the seed alone, which makes
    resumed runs exact. Otherwise the envs are seeded once with ``seed`` and run on, optionally with their first
    episodes cut short by random amounts (``stagger_episodes``, :meth:`ResumableCollector.stagger_episodes`); resumed
    runs are exact through the collector's state dict (carried observations, the envs' physics and random states,
    each worker's sampling RNG). ``compile_policy`` compiles the policy in the collector (:data:`POLICY_COMPILE`).

    Examples:
        >>> import functools
        >>> from torchrl_gorl import make_latent_actor
        >>> from torchrl_gorl.envs import make_env
        >>> actor = make_latent_actor(5, 1, latent_key="action")
        >>> collector = make_collector(functools.partial(make_env, "cartpole-balance", backend="batched"), actor,
        ...                            num_envs=2, frames_per_batch=20, full_episodes=False, seed=0)
        >>> collect_batch(collector, iter(collector), seed=1, reseed_envs=False).shape
        torch.Size([2, 10])
        >>> collector.shutdown()
    """
    if num_envs % max(num_workers, 1):
        raise ValueError(f"num_workers = {num_workers} must divide num_envs = {num_envs}.")
    common = dict(frames_per_batch=frames_per_batch, total_frames=-1, reset_at_each_iter=full_episodes,
                  policy_device=device, env_device=env_device, storing_device=device,
                  auto_register_policy_transforms=False, compile_policy=POLICY_COMPILE if compile_policy else None)
    if backend == "ray":
        collector = make_ray_collector(functools.partial(create_env, num_envs // num_workers), policy,
                                       num_workers=num_workers, ray_address=ray_address,
                                       stagger_episodes=stagger_episodes, **common)
    elif num_workers == 0:
        collector = ResumableCollector(create_env(num_envs), policy, **common)
    else:
        create = EnvCreator(functools.partial(create_env, num_envs // num_workers))
        collector = MonitoredMultiSyncCollector(
            [create] * num_workers, policy,
            collector_class=functools.partial(SeededCollector, stagger_episodes=stagger_episodes), **common)
    if not full_episodes:  # seeded once: the envs run on, and reseeding resets them
        collector.set_seed(seed)
        if backend == "local" and num_workers == 0:  # (the multi-process and Ray workers reset themselves)
            collector.reset()  # seeding reset the envs: the first observations must be those of the seeded resets
            if stagger_episodes:
                collector.stagger_episodes(seed)
    return collector


def make_ray_collector(create_env: Callable[[], EnvBase], policy: Callable, *, num_workers: int,
                       ray_address: str | None = None, stagger_episodes: bool = False, **common: Any):
    """``num_workers`` Ray actors, each a collector stepping the envs ``create_env()`` builds, through TorchRL's
    ``Collector(..., backend="ray")`` (:class:`~torchrl.collectors.distributed.RayCollector`). Its sync mode stacks
    the workers' batches; :func:`collect_batch` reshapes them to ``[num_envs, T]`` as the local ones. ``common``:
    the other collector arguments (:func:`make_collector`).

    * Ray: started on this machine (``num_cpus = num_workers``, no dashboard, the workers' output kept in Ray's
      session logs, ``/tmp/ray/session_latest/logs``) unless this process already runs Ray or ``ray_address``
      names a cluster. TorchRL's runtime lease stops a Ray it started at ``collector.shutdown()``; after an error,
      Ray's exit hook does.
    * Weights: TorchRL's default ``RayWeightSyncScheme`` sends ``TensorDict.from_module(policy)``, buffers included,
      so every ``update_policy_weights_()`` carries the observation statistics with the parameters. It sends over
      torch.distributed (gloo) from this process: the workers must reach this machine over TCP.
    * Seeding: the workers are :class:`SeededCollector` on one torch thread each, so ``collector.set_seed(seed)``
      seeds their envs (the local collector's seed chain: env ``i`` gets the same seed as in a local run) and their
      torch RNGs. A batch is then a function of the policy, the seed and ``num_workers`` (each worker draws its own
      noise, so the actions differ from a local run's).
    * ``total_frames=-1`` reads as zero frames in RayCollector (0.14.1): endless is ``sys.maxsize`` here.
    """
    quiet = {"logging_level": "warning", "log_to_driver": False}  # actor reprs would flood the console
    # "local": a new instance even where RAY_ADDRESS is set; no ray_address means this machine
    ray_init = {"address": "local", "num_cpus": num_workers, "include_dashboard": False, **quiet}
    if ray_address is not None:
        ray_init = {"address": ray_address, **quiet}
    remote = {"num_cpus": 1}  # TorchRL's default also reserves 2 GiB of memory and a fifth of a GPU per actor
    if any(torch.device(common[key]).type == "cuda" for key in ("policy_device", "env_device", "storing_device")):
        remote["num_gpus"] = 1 / num_workers  # as the local workers, the actors use the run's GPU
    options = {
        "collector_class": SeededCollector,
        "collector_kwargs": {"num_threads": 1, "stagger_episodes": stagger_episodes,
                             "auto_register_policy_transforms": common.pop("auto_register_policy_transforms", False),
                             "compile_policy": common.pop("compile_policy", None)},  # compiled in the actor
        "ray_init_config": ray_init,
        "remote_configs": remote,
    }
    if common.get("total_frames", -1) < 0:
        common["total_frames"] = sys.maxsize
    try:
        collector = Collector(create_env, policy, backend="ray", num_collectors=num_workers, sync=True,
                              backend_options=options, **common)
    except ConnectionError as err:
        if ray_address is None:
            raise
        raise ValueError(f"ray_address = {ray_address!r}: cannot connect ({err}). Is the cluster up (ray status), and "
                         "with Ray's token authentication, is RAY_AUTH_MODE=token set here (docs/scaling.md)?") from err
    collector.update_policy_weights_()  # joins the weight-sync process group now, not at the first update
    return collector


def collect_batch(collector, iterator: Iterator[TensorDictBase], seed: int, device: torch.device | str = "cpu", *,
                  reseed_envs: bool = True) -> TensorDictBase:
    """The next batch of ``iterator`` (``iter(collector)``) as a function of ``seed`` alone: the envs are reseeded
    and the policy's sampling runs on a torch RNG seeded with ``seed`` (forked, so the training RNG is untouched).

    A freshly built collector consumes the RNG differently on its first batch; seeding each batch makes a resumed
    run see exactly the episodes of the uninterrupted one. Worker processes seed their own sampling from it too:
    TorchRL's multi-process collector does (``torch.manual_seed`` in each worker), and so do the Ray actors
    (:class:`SeededCollector`). ``reseed_envs=False`` (envs that run on across batches) leaves the running envs
    alone and seeds the sampling only. Returns ``[num_envs, T]``: the multi-worker collectors'
    ``[workers, envs per worker, T]`` is flattened.
    """
    device = torch.device(device)
    if reseed_envs:
        collector.set_seed(seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        data = next(iterator)
    return data.reshape(-1, data.shape[-1]) if data.batch_dims > 2 else data
