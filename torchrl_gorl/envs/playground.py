"""MuJoCo Playground's dm_control-suite ports (the paper's environments) as a batched GoRL env.

Nothing here imports JAX or ``mujoco_playground`` at module level: ``import torchrl_gorl`` works without the
``[playground]`` extra. The task names (``PLAYGROUND_TASKS``, :func:`resolve_playground_task`) are plain data in
:mod:`torchrl_gorl.envs.tasks`.
"""
from __future__ import annotations

import importlib.util
import os
import warnings

import torch
from tensordict import TensorDictBase
from torchrl.envs import (
    Compose,
    EnvBase,
    InitTracker,
    MujocoPlaygroundEnv,
    RewardSum,
    StepCounter,
    TransformedEnv,
)

from torchrl_gorl.envs.tasks import EPISODE_LENGTH, resolve_playground_task
from torchrl_gorl.envs.transforms import TanhActionTransform

#: Physics implementations: ``"warp"`` (MuJoCo Warp, playground's default) or ``"jax"`` (MJX); ``"auto"`` picks.
PLAYGROUND_IMPLS = ("auto", "warp", "jax")

INSTALL_HINT = 'pip install -e ".[playground]"'


def playground_available() -> bool:
    """Whether the ``[playground]`` extra (``mujoco_playground``) is installed; imports nothing."""
    return importlib.util.find_spec("mujoco_playground") is not None


def preallocation_off() -> None:
    """JAX takes 75% of a GPU's memory when its GPU client starts, which would leave torch (and every other
    process's JAX: collector workers, Ray actors) the rest. Must run before JAX first touches its backend; a
    value the user set is kept."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def _checked_impl(impl: str) -> str:
    if impl not in PLAYGROUND_IMPLS:
        raise ValueError(f"impl must be one of {list(PLAYGROUND_IMPLS)}, got {impl!r}.")
    return impl


def resolve_impl(impl: str = "auto") -> str:
    """``"auto"`` is ``"warp"`` when JAX runs on a GPU and MuJoCo Warp is installed, and ``"jax"`` otherwise
    (why: :func:`make_playground_env`); ``"warp"`` and ``"jax"`` pass through."""
    if _checked_impl(impl) != "auto":
        return impl
    import jax

    has_warp = importlib.util.find_spec("warp") is not None  # a slim GPU install may carry MJX alone
    return "warp" if jax.default_backend() == "gpu" and has_warp else "jax"


class PlaygroundEnv(MujocoPlaygroundEnv):
    """TorchRL's :class:`~torchrl.envs.MujocoPlaygroundEnv` with the changes batched on-policy collection needs.

    * Speed: the wrapper asks Playground for ``observation_size`` at every step, which traces ``reset`` (~0.4 s a
      step on CPU, more than the physics); it is asked once here. Reset and step are compiled once each, as
      ``jit(vmap(f))`` on strongly typed state committed to JAX's device (else the first steps compile twice).
    * Per-env resets: a ``"_reset"`` mask resets only those envs and keeps the others' physics state (the
      wrapper re-initialises the whole batch, which would silently desynchronise the running envs from
      their observations when one env ends early, e.g. on NaN physics).
    * The action is handed to JAX on JAX's own device, so ``device="cuda"`` also works with a CPU-only JAX
      (physics on the CPU, tensors on the GPU) and ``device="cpu"`` with a CUDA JAX.
    """

    def _init_env(self) -> None:
        super()._init_env()
        jax = self.jax

        def reset(keys):
            # strong dtypes (reset sets ``time=0.0``, a weak float): else the first step compiles twice
            state = jax.vmap(self._env.reset)(keys)
            return jax.tree_util.tree_map(lambda x: jax.numpy.asarray(x, dtype=x.dtype), state)

        # committed to JAX's device like the actions (DLPack): else the second step compiles again
        reset, device = jax.jit(reset), jax.devices()[0]
        self._vmap_jit_env_reset = lambda keys: reset(jax.device_put(keys, device))
        self._vmap_jit_env_step = jax.jit(jax.vmap(self._env.step))
        self._batched_leaves = None
        backend = jax.default_backend()
        self.physics_device = torch.device("cuda", jax.devices()[0].id) if backend == "gpu" else torch.device("cpu")

    def _obs_is_dict(self) -> bool:
        # Playground's ``observation_size`` traces ``reset`` (~0.4 s) and the wrapper asks for it every step
        if "_obs_is_dict_cached" not in self.__dict__:
            self._obs_is_dict_cached = isinstance(self._env.observation_size, dict)
        return self._obs_is_dict_cached

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        if tensordict.device != self.physics_device:
            tensordict = tensordict.select(*self.action_keys).to(self.physics_device)
        return super()._step(tensordict)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        mask = None if tensordict is None else tensordict.get("_reset", None)
        previous = self._current_state
        out = super()._reset(tensordict, **kwargs)
        if mask is None or previous is None or bool(mask.all()):
            return out
        state = self._merge_states(mask.reshape(-1), self._current_state, previous)
        self._current_state = state
        for key, value in self._extract_obs(state).items():
            out.set(key, value)
        return out

    def _merge_states(self, mask: torch.Tensor, fresh, previous):
        """``fresh`` where ``mask``, else ``previous``, leaf by leaf. Leaves without a per-env axis (MuJoCo Warp's
        contact buffers, shared by the batch and recomputed at every step) keep ``previous``."""
        jax = self.jax
        if self._batched_leaves is None:
            single = jax.eval_shape(self._env.reset, jax.random.PRNGKey(0))
            self._batched_leaves = [
                tuple(leaf.shape) == (self.batch_size.numel(), *one.shape)
                for leaf, one in zip(jax.tree_util.tree_leaves(fresh), jax.tree_util.tree_leaves(single))
            ]
        keep = jax.numpy.asarray(mask.cpu().numpy())
        leaves_new, treedef = jax.tree_util.tree_flatten(fresh)
        leaves = [
            jax.numpy.where(keep.reshape(keep.shape + (1,) * (new.ndim - 1)), new, old) if batched else old
            for new, old, batched in zip(leaves_new, jax.tree_util.tree_leaves(previous), self._batched_leaves)
        ]
        return jax.tree_util.tree_unflatten(treedef, leaves)


def make_playground_env(
    task: str,
    num_envs: int = 1,
    *,
    impl: str = "auto",
    device: torch.device | str | None = None,
    seed: int | None = None,
    max_steps: int = EPISODE_LENGTH,
) -> EnvBase:
    """``num_envs`` MuJoCo Playground envs of ``task`` in one vmapped batch, with the contract of
    :func:`~torchrl_gorl.envs.make_env`: a flat float32 ``"observation"``, the ``tanh`` squash on the action,
    ``InitTracker``, ``StepCounter`` and ``RewardSum``, and episodes that end by time limit after
    ``max_steps`` steps with ``truncated=True, terminated=False`` (Playground envs have no time limit of their
    own and never auto-reset here; their ``done`` only flags NaN physics, which ends that env's episode as
    terminated and resets it alone).

    Physics implementation (``impl``): ``"warp"`` is MuJoCo Warp, ``"jax"`` is MJX. ``"auto"`` picks ``"warp"``
    when JAX runs on a GPU (Playground 0.2.0's default engine, written for GPUs) and ``"jax"`` on CPU, where MJX
    measured 5-20x the steps per second of Warp and far faster resets (CheetahRun on a shared 2-core box,
    ``docs/playground.md``: ~300-1000 env steps/s at 2 envs, ~3000 at 16, ~7600 at 64, against ~50, ~300-400 and
    ~1400; a reset, which settles the cheetah for 200 steps, 0.1-0.5 s against 7 s) for a longer compile (~70-90 s
    per new env of 2-16, against ~20-30 s once Warp's kernel cache is warm; ``JAX_COMPILATION_CACHE_DIR`` lets MJX's
    be reused). On CPU either is for tests: train there with ``env.backend=dm_control``.

    Args:
        task (str): Playground name (``"CheetahRun"``) or dm_control name (``"cheetah-run"``), see
            :func:`resolve_playground_task`.
        num_envs (int): batch size (JAX ``vmap``).

    Keyword Args:
        impl (str): ``"auto"`` (default), ``"warp"`` or ``"jax"``.
        device (torch.device or str, optional): where the env's tensors live (default: CPU). The physics runs on
            JAX's default device: the GPU when a CUDA build of JAX is installed (``jax[cuda12]``), else the CPU.
        seed (int, optional): seeds the env, so its episodes are reproducible (also see ``env.set_seed``).
        max_steps (int): episode length. Defaults to 1000, the paper's.

    Examples:
        >>> env = make_playground_env("CheetahRun", 2, seed=0)  # or "cheetah-run"
        >>> env.observation_spec["observation"].shape, env.action_spec.shape
        (torch.Size([2, 17]), torch.Size([2, 6]))
        >>> rollout = env.rollout(1000)  # doctest: +SKIP
        >>> rollout["next", "truncated"][:, -1].all()  # doctest: +SKIP
        tensor(True)

    (The doctest skips the rollout: its first reset and step compile the physics, ~1 min on CPU.)
    """
    name = resolve_playground_task(task)
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}.")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}.")
    _checked_impl(impl)  # bad input first, before the install checks
    if not playground_available():
        raise ModuleNotFoundError(f"MuJoCo Playground envs need the [playground] extra: {INSTALL_HINT}.")
    if impl == "warp" and importlib.util.find_spec("warp") is None:
        raise ModuleNotFoundError(f"impl='warp' needs MuJoCo Warp (warp-lang, in the [playground] extra: "
                                  f"{INSTALL_HINT}); impl='jax' runs MJX without it.")
    preallocation_off()  # before anything starts JAX's GPU client (resolve_impl does)
    impl = resolve_impl(impl)
    device = torch.device("cpu" if device is None else device)
    import jax

    if device.type == "cuda" and jax.default_backend() == "cpu":
        warnings.warn("make_playground_env(device='cuda') with a CPU-only JAX: the physics runs on the CPU and the "
                      "tensors cross to the GPU at every step; for GPU physics install JAX's CUDA build "
                      "(pip install \"jax[cuda12]==0.10.2\").", stacklevel=2)
    base = PlaygroundEnv(name, batch_size=[num_envs], device=device, config_overrides={"impl": impl})
    env = TransformedEnv(
        base, Compose(TanhActionTransform(), InitTracker(), StepCounter(max_steps=max_steps), RewardSum())
    )
    if seed is not None:
        env.set_seed(seed)
    return env
