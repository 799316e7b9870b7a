"""Many dm_control instances stepped in one process, one TensorDict per batched step."""
from __future__ import annotations

from collections.abc import Sequence

import mujoco
import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs import EnvBase
from torchrl._utils import seed_generator  # the chain SerialEnv and ParallelEnv seed their envs with

from torchrl_gorl.envs.tasks import resolve_task


_INTEGRATION = mujoco.mjtState.mjSTATE_INTEGRATION


def _model_arrays(model: mujoco.MjModel) -> dict[str, np.ndarray]:
    """Copies of the model's numeric arrays (what a task may change at reset); text, names and large data
    (textures, meshes) left out."""
    arrays = {}
    for name in dir(model):
        if name.startswith("_") or name in ("names", "text_data", "paths"):
            continue
        value = getattr(model, name, None)
        if isinstance(value, np.ndarray) and value.dtype != object and value.size <= 100_000:  # not textures
            arrays[name] = value.copy()
    return arrays


class BatchedDMControlEnv(EnvBase):
    """``num_envs`` dm_control tasks as one TorchRL env of batch size ``[num_envs]``.

    TorchRL's standard path (``SerialEnv``/``ParallelEnv`` of ``DMControlEnv`` plus ``CatTensors`` and
    ``DoubleToFloat``) builds and transforms one TensorDict per env per step; on small control tasks that
    per-step Python and TensorDict work, not the physics, sets the frame rate. This env loops over the
    dm_control instances itself, writes their observations into one preallocated array and builds a
    single TensorDict per *batched* step, so the overhead is paid once for all envs and the policy runs
    once on the whole batch. It is an ordinary :class:`~torchrl.envs.EnvBase`: TorchRL transforms,
    collectors (single- or multi-process) and ``ParallelEnv`` accept it.

    Observations and values match ``DMControlEnv(domain, task)`` followed by
    ``CatTensors(sorted keys, "observation")`` and ``DoubleToFloat()``: a flat float32 ``"observation"``
    (keys in sorted order, scalars as one feature), float32 ``"reward"``, an action ``Bounded`` to the
    task's range, and the time limit reported as ``truncated=True, terminated=False`` (``done=True``).
    Seeds follow TorchRL's chain for batched envs (env 0 gets ``seed``, env ``i + 1`` gets
    ``seed_generator(seed_i)``), so a ``SerialEnv``/``ParallelEnv`` of ``DMControlEnv`` seeded alike
    produces the same episodes; resets can be partial (the ``"_reset"`` mask TorchRL collectors send).

    Args:
        task (str): dm_control ``"domain-task"`` or a paper name (see :func:`resolve_task`).
        num_envs (int): number of dm_control instances.

    Keyword Args:
        seed (int, optional): seed of env 0; the others follow TorchRL's seed chain.
        device: where the TensorDicts are put (physics always runs on the CPU).

    Examples:
        >>> env = BatchedDMControlEnv("cheetah-run", num_envs=4, seed=0)
        >>> td = env.rollout(3)
        >>> td["next", "observation"].shape
        torch.Size([4, 3, 17])
    """

    def __init__(
        self, task: str, num_envs: int, *, seed: int | None = None, device: torch.device | str = "cpu"
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}.")
        domain, name = resolve_task(task)
        from dm_control import suite

        super().__init__(batch_size=torch.Size([num_envs]), device=device)
        self.task_name = f"{domain}-{name}"
        self._envs = [suite.load(domain, name) for _ in range(num_envs)]
        obs_spec = self._envs[0].observation_spec()
        self._obs_keys = sorted(obs_spec)
        sizes = [max(1, int(np.prod(obs_spec[k].shape))) for k in self._obs_keys]
        bounds = np.cumsum([0, *sizes])
        self._obs_slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        self.observation_dim = int(bounds[-1])
        act = self._envs[0].action_spec()
        self.action_dim = int(act.shape[0])
        self._obs = np.zeros((num_envs, self.observation_dim), dtype=np.float64)
        self._pristine_model = _model_arrays(self._envs[0].physics.model.ptr)  # before any reset changed it

        n = (num_envs,)
        self.observation_spec = Composite(
            observation=Unbounded(shape=(*n, self.observation_dim), dtype=torch.float32, device=self.device),
            shape=n,
            device=self.device,
        )
        self.action_spec = Bounded(
            low=torch.tensor(act.minimum, dtype=torch.float32).expand(*n, self.action_dim).clone(),
            high=torch.tensor(act.maximum, dtype=torch.float32).expand(*n, self.action_dim).clone(),
            shape=(*n, self.action_dim),
            dtype=torch.float32,
            device=self.device,
        )
        self.reward_spec = Unbounded(shape=(*n, 1), dtype=torch.float32, device=self.device)
        self.done_spec = Composite(
            done=Bounded(0, 1, shape=(*n, 1), dtype=torch.bool, device=self.device),
            terminated=Bounded(0, 1, shape=(*n, 1), dtype=torch.bool, device=self.device),
            truncated=Bounded(0, 1, shape=(*n, 1), dtype=torch.bool, device=self.device),
            shape=n,
            device=self.device,
        )
        if seed is not None:
            self.set_seed(seed)

    @property
    def num_envs(self) -> int:
        return len(self._envs)

    def _write_observation(self, i: int, observation) -> None:
        row = self._obs[i]
        for key, sl in zip(self._obs_keys, self._obs_slices):
            row[sl] = np.ravel(observation[key])

    def _observation(self) -> torch.Tensor:
        return torch.from_numpy(self._obs.astype(np.float32)).to(self.device)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action")
        if action.shape != (self.num_envs, self.action_dim):
            raise ValueError(
                f"{type(self).__name__}({self.task_name!r}, num_envs={self.num_envs}) expects an action of shape "
                f"{(self.num_envs, self.action_dim)}, got {tuple(action.shape)}."
            )
        action = action.detach().to("cpu", torch.float64).numpy()
        n = self.num_envs
        reward = np.zeros((n, 1), dtype=np.float32)
        terminated = np.zeros((n, 1), dtype=bool)
        truncated = np.zeros((n, 1), dtype=bool)
        for i, env in enumerate(self._envs):
            step = env.step(action[i])
            self._write_observation(i, step.observation)
            reward[i, 0] = step.reward
            if step.last():  # the time limit ends dm_control episodes with discount 1
                if np.isclose(step.discount, 1.0):
                    truncated[i, 0] = True
                else:
                    terminated[i, 0] = True
        done = terminated | truncated
        return TensorDict(
            {
                "observation": self._observation(),
                "reward": torch.from_numpy(reward).to(self.device),
                "done": torch.from_numpy(done).to(self.device),
                "terminated": torch.from_numpy(terminated).to(self.device),
                "truncated": torch.from_numpy(truncated).to(self.device),
            },
            batch_size=self.batch_size,
            device=self.device,
        )

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        mask = None if tensordict is None else tensordict.get("_reset", None)
        indices = range(self.num_envs) if mask is None else mask.reshape(-1).nonzero().reshape(-1).tolist()
        for i in indices:
            self._write_observation(i, self._envs[i].reset().observation)
        false = torch.zeros((self.num_envs, 1), dtype=torch.bool, device=self.device)
        return TensorDict(
            {"observation": self._observation(), "done": false, "terminated": false.clone(), "truncated": false.clone()},
            batch_size=self.batch_size,
            device=self.device,
        )

    def set_seed(self, seed: int | None = None, static_seed: bool = False) -> int | None:
        """Seeds the envs along the chain and returns the seed after the last one, as ``SerialEnv``: the next env
        seeded with it (the next worker's, in a multi-process or Ray collector) continues the chain. ``EnvBase``'s
        would return env 1's seed, so that worker ``w + 1`` repeated the seeds of worker ``w``'s envs."""
        self._set_seed(seed)
        if seed is None or static_seed:
            return seed
        for _ in range(self.num_envs):
            seed = seed_generator(seed)
        return seed

    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            return
        for i, env in enumerate(self._envs):
            env.task._random = np.random.RandomState(seed % 2**32)
            # as DMControlEnv: seeding resets, so equal seeds give equal episodes in both envs
            self._write_observation(i, env.reset().observation)
            seed = seed_generator(seed)  # the chain SerialEnv/ParallelEnv use: the backends match env for env

    @property
    def time_limit(self) -> int:
        """Steps per episode (dm_control's time limit divided by the control timestep: 1000 on the suite)."""
        limit = self._envs[0]._step_limit  # dm_control's control.Environment keeps it private
        if not np.isfinite(limit):
            raise ValueError(f"task {self.task_name!r} has no time limit (time_limit=inf): its episodes cannot be staggered.")
        return int(limit)

    def set_episode_progress(self, steps: Sequence[int]) -> None:
        """Sets how many steps of their current episode the envs have run: env ``i``'s episode then ends (truncated)
        after ``time_limit - steps[i]`` more steps. Used right after a reset to shorten the first episodes by
        different amounts, so that envs started together do not stay in lockstep (see
        :meth:`~torchrl_gorl.collectors.ResumableCollector.stagger_episodes`)."""
        if len(steps) != self.num_envs or not all(0 <= int(k) < self.time_limit for k in steps):
            raise ValueError(f"steps must hold {self.num_envs} values in [0, {self.time_limit}), got {list(steps)}.")
        for env, k in zip(self._envs, steps):
            env._step_count = int(k)

    def runtime_state(self) -> dict[str, torch.Tensor]:
        """Everything a running env needs to continue bit-identically after a rebuild, as a flat dict of CPU tensors
        whose first dimension is the env (``N = num_envs``):

        * ``"physics"`` ``[N, S]`` float64: MuJoCo's integration state (``mj_getState`` with
          ``mjSTATE_INTEGRATION``: time, positions, velocities, activations, controls, the solver's warm start);
        * ``"random_key"`` ``[N, 624]`` int64 (MT19937's uint32 words), ``"random_pos"`` ``[N]`` int64,
          ``"random_has_gauss"`` ``[N]`` int64, ``"random_cached_gaussian"`` ``[N]`` float64: the task's NumPy
          ``RandomState`` (``get_state()``);
        * ``"step_count"`` ``[N]`` int64 and ``"reset_next_step"`` ``[N]`` bool: the time limit's counters;
        * ``"model/<name>"`` ``[N, *shape]`` in the field's dtype, for every model field that the task changed at
          reset (relative to the freshly loaded model) in at least one env (finger-turn moves its target, for
          instance): each env's current value;
        * ``"observation"`` ``[N, observation_dim]`` float64: the last observations.

        Arrays only, no pickled objects: a checkpoint holding it loads with ``torch.load(..., weights_only=True)``
        and cannot run code; it crosses TorchRL's collector pipes and Ray inside a state dict. About 5.9 kB an env
        on cheetah-run (physics 91 float64, the random state's 624 words as int64: 5 kB). (Pickling ``MjData`` itself
        would also do, at 12 MB an env, and could run code when loaded.)
        """
        n = self.num_envs
        model0 = self._envs[0].physics.model.ptr
        physics = np.empty((n, mujoco.mj_stateSize(model0, _INTEGRATION)), dtype=np.float64)
        random_key = np.empty((n, 624), dtype=np.int64)
        random_pos = np.empty(n, dtype=np.int64)
        random_has_gauss = np.empty(n, dtype=np.int64)
        random_cached = np.empty(n, dtype=np.float64)
        step_count = np.empty(n, dtype=np.int64)
        reset_next_step = np.empty(n, dtype=bool)
        changed = set()
        for i, env in enumerate(self._envs):
            model, data = env.physics.model.ptr, env.physics.data.ptr
            mujoco.mj_getState(model, data, physics[i], _INTEGRATION)
            changed.update(name for name, value in self._pristine_model.items()
                           if not np.array_equal(getattr(model, name), value))
            algorithm, key, pos, has_gauss, cached = env.task._random.get_state()
            if algorithm != "MT19937" or np.shape(key) != (624,):
                raise RuntimeError(f"env {i}'s task random state is not MT19937 ({algorithm!r}): it cannot be saved.")
            random_key[i], random_pos[i], random_has_gauss[i], random_cached[i] = key, pos, has_gauss, cached
            step_count[i], reset_next_step[i] = env._step_count, env._reset_next_step
        state = {
            "physics": torch.from_numpy(physics),
            "random_key": torch.from_numpy(random_key),
            "random_pos": torch.from_numpy(random_pos),
            "random_has_gauss": torch.from_numpy(random_has_gauss),
            "random_cached_gaussian": torch.from_numpy(random_cached),
            "step_count": torch.from_numpy(step_count),
            "reset_next_step": torch.from_numpy(reset_next_step),
        }
        for name in sorted(changed):
            values = np.stack([np.array(getattr(env.physics.model.ptr, name)) for env in self._envs])
            state[f"model/{name}"] = torch.from_numpy(values)
        state["observation"] = torch.from_numpy(self._obs.copy())
        return state

    _RUNTIME_KEYS = {  # key: (dtype, shape after the env dimension; None: the model's)
        "physics": (torch.float64, None),
        "random_key": (torch.int64, (624,)),
        "random_pos": (torch.int64, ()),
        "random_has_gauss": (torch.int64, ()),
        "random_cached_gaussian": (torch.float64, ()),
        "step_count": (torch.int64, ()),
        "reset_next_step": (torch.bool, ()),
        "observation": (torch.float64, None),
    }

    def _check_runtime_state(self, state) -> list[tuple]:
        """Validates a :meth:`runtime_state` against these envs without changing them; returns each env's task random
        state (as ``RandomState.get_state`` gives it, already accepted by a scratch ``RandomState``)."""
        who = f"{type(self).__name__}({self.task_name!r}, num_envs={self.num_envs})"
        if not isinstance(state, dict):  # a Mapping of tensors, as torch.load or a collector pipe gives it
            try:
                state = dict(state)
            except TypeError:
                raise ValueError(f"a runtime state is a dict of tensors, got {type(state).__name__}.") from None
        if "envs" in state:
            raise ValueError("runtime state key 'envs': a runtime state of the old pickled format is not loaded "
                             "(unpickling it could run code); save it again with this version.")
        missing = sorted(set(self._RUNTIME_KEYS) - set(state))
        if missing:
            raise ValueError(f"runtime state key {missing[0]!r} is missing (expected keys: {sorted(self._RUNTIME_KEYS)}"
                             " and 'model/<field>' ones).")
        model = self._envs[0].physics.model.ptr
        widths = {"physics": (mujoco.mj_stateSize(model, _INTEGRATION),), "observation": (self.observation_dim,)}
        for key, value in state.items():
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"runtime state key {key!r} must be a tensor, got {type(value).__name__}.")
            if key.startswith("model/"):
                name = key[len("model/"):]
                if name not in self._pristine_model:
                    raise ValueError(f"runtime state key {key!r}: {self.task_name}'s model has no field {name!r}.")
                pristine = self._pristine_model[name]
                dtype, shape = torch.from_numpy(pristine[:0].copy()).dtype, pristine.shape
            elif key in self._RUNTIME_KEYS:
                dtype, shape = self._RUNTIME_KEYS[key]
                shape = widths[key] if shape is None else shape
            else:
                raise ValueError(f"runtime state key {key!r} is unknown (expected keys: {sorted(self._RUNTIME_KEYS)} "
                                 "and 'model/<field>' ones).")
            expected = (self.num_envs, *shape)
            if tuple(value.shape) != expected:
                if value.ndim == 0 or value.shape[0] != self.num_envs:
                    held = f"holds {value.shape[0]} envs" if value.ndim else "is a scalar"
                    raise ValueError(f"runtime state key {key!r} {held}, {who} has {self.num_envs} "
                                     f"(expected shape {expected}, got {tuple(value.shape)}).")
                raise ValueError(f"runtime state key {key!r} has shape {tuple(value.shape)}, {who} expects {expected}.")
            if value.dtype != dtype:
                raise ValueError(f"runtime state key {key!r} has dtype {value.dtype}, {who} expects {dtype}.")
        key = state["random_key"]
        if ((key < 0) | (key >= 2**32)).any():
            raise ValueError("runtime state key 'random_key' holds values outside MT19937's uint32 range.")
        random_states = []
        for i in range(self.num_envs):
            random_state = ("MT19937", key[i].numpy().astype(np.uint32), int(state["random_pos"][i]),
                            int(state["random_has_gauss"][i]), float(state["random_cached_gaussian"][i]))
            try:
                np.random.RandomState().set_state(random_state)  # a scratch generator: the envs' stay untouched
            except (ValueError, TypeError) as error:
                raise ValueError(f"runtime state keys 'random_*' of env {i} are not a valid MT19937 state: {error}") from None
            random_states.append(random_state)
        return random_states

    def load_runtime_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restores :meth:`runtime_state` into these envs (the same task and number of envs).

        The state is validated first (every key known and present, shapes and dtypes these envs expect, model fields
        this task's model has); a :class:`ValueError` naming the key leaves the envs as they were.
        """
        random_states = self._check_runtime_state(state)
        state = {key: value.detach().cpu() for key, value in dict(state).items()}
        changed = {key[len("model/"):]: value.numpy() for key, value in state.items() if key.startswith("model/")}
        physics = state["physics"].numpy()
        step_count, reset_next_step = state["step_count"].tolist(), state["reset_next_step"].tolist()
        for i, env in enumerate(self._envs):
            model, data = env.physics.model.ptr, env.physics.data.ptr
            for name, value in self._pristine_model.items():  # the task's changes on top of the XML's model
                getattr(model, name)[...] = changed[name][i] if name in changed else value
            mujoco.mj_setState(model, data, np.ascontiguousarray(physics[i]), _INTEGRATION)
            # dm_control's step starts with mj_step2: it expects mj_step1's position and velocity stages done
            mujoco.mj_step1(model, data)
            env.task._random.set_state(random_states[i])
            env._step_count, env._reset_next_step = int(step_count[i]), bool(reset_next_step[i])
        self._obs[:] = state["observation"].numpy()

    def close(self, *, raise_if_closed: bool = True) -> None:
        for env in self._envs:
            env.close()
        super().close(raise_if_closed=raise_if_closed)
