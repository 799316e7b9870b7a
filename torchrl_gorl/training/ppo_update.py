"""The PPO update: GAE, minibatch epochs, a joint gradient clip and Adam, optionally compiled into one graph per
minibatch step."""
from __future__ import annotations

import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.modules import ProbabilisticActor, ValueOperator
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

from torchrl_gorl.modules import ObservationNormalizer
from torchrl_gorl.objectives import LatentPriorLoss


class PPOUpdate:
    """The PPO update of GoRL's encoder stages and of the PPO-family baselines: TorchRL's GAE (recomputed each epoch
    with the current critic), a ``ClipPPOLoss`` (plus, optionally, the latent regulariser), one Adam over actor and
    critic and a joint global-norm gradient clip, as the reference.

    Per batch ``[num_envs, T]`` (:meth:`update`): rewards scaled by ``reward_scale``, then ``epochs`` passes of GAE
    and shuffled minibatches of ``minibatch_size`` rows, each one Adam step. Per stage (:meth:`set_stage`): the clip
    range, the regulariser's coefficient and the gradient-norm bound, without recompiling anything.

    Args:
        actor (ProbabilisticActor): the policy the loss trains (GoRL: the latent actor, not the composite policy).
        critic (ValueOperator): the value network.
        loss (ClipPPOLoss): TorchRL's ``ClipPPOLoss`` on ``actor`` and ``critic`` (:func:`~torchrl_gorl.make_latent_ppo_loss`),
            or a subclass (:class:`~torchrl_gorl.FPOLoss`, :class:`~torchrl_gorl.DPPOLoss`).

    Keyword Args:
        prior (LatentPriorLoss, optional): the latent regulariser, added to the loss.
        gamma (float): discount.
        lmbda (float): GAE's lambda. Defaults to ``0.95``.
        lr (float): Adam's learning rate. Defaults to ``1e-3``.
        epochs (int): passes over each batch. Defaults to ``10``.
        minibatch_size (int): rows per minibatch (a batch of ``frames_per_batch`` rows gives
            ``frames_per_batch // minibatch_size`` Adam steps per epoch).
        max_grad_norm (float): the joint gradient-norm bound until :meth:`set_stage`. Defaults to ``0.5``.
        reward_scale (float): training rewards are multiplied by it (the env's stay raw). Defaults to ``1.0``.
        num_threads (int, optional): torch intra-op threads during the update (collection, which never overlaps it,
            keeps its own).
        compile (bool): ``torch.compile`` the minibatch losses; autograd then runs their compiled backward.
        compile_step (bool): compile the whole minibatch step (losses, gradients, clip, Adam) into one graph; needs
            ``loss`` to be TorchRL's ``ClipPPOLoss`` itself and both losses built with ``functional=False``.
        compile_backend (str): the ``torch.compile`` backend. Defaults to ``"inductor"`` (on CPU: a C++ compiler).
        observation_norm (ObservationNormalizer, optional): the shared running statistics; the caller updates them
            after each update, so that the stored log-probabilities always match the collecting policy.
        device: where the update runs.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from torchrl_gorl import make_latent_actor, make_latent_ppo_loss, make_value_network
        >>> from torchrl_gorl.training import PPOUpdate
        >>> actor, critic = make_latent_actor(3, 2), make_value_network(3)
        >>> ppo = PPOUpdate(actor, critic, make_latent_ppo_loss(actor, critic), gamma=0.99, epochs=2,
        ...                 minibatch_size=8)
        >>> obs = torch.randn(2, 8, 3)
        >>> data = actor(TensorDict({"observation": obs}, [2, 8])).detach()
        >>> data["next"] = TensorDict({"observation": torch.randn(2, 8, 3), "reward": torch.randn(2, 8, 1),
        ...                            "done": torch.zeros(2, 8, 1, dtype=torch.bool),
        ...                            "terminated": torch.zeros(2, 8, 1, dtype=torch.bool)}, [2, 8])
        >>> metrics = ppo.update(data)  # 2 epochs x 2 minibatches of 8 rows
        >>> sorted(k for k in metrics if k.startswith("train/loss"))
        ['train/loss_critic', 'train/loss_entropy', 'train/loss_objective']
    """

    def __init__(self, actor: ProbabilisticActor, critic: ValueOperator, loss: ClipPPOLoss, *,
                 prior: LatentPriorLoss | None = None, gamma: float, lmbda: float = 0.95, lr: float = 1e-3,
                 epochs: int = 10, minibatch_size: int, max_grad_norm: float = 0.5, reward_scale: float = 1.0,
                 num_threads: int | None = None, compile: bool = False, compile_step: bool = False,
                 compile_backend: str = "inductor", observation_norm: ObservationNormalizer | None = None,
                 device: torch.device | str | None = None) -> None:
        if compile_step:
            if type(loss) is not ClipPPOLoss:
                raise ValueError(f"compile_step=True supports TorchRL's ClipPPOLoss (the latent PPO loss of GoRL and "
                                 f"Gaussian PPO), not {type(loss).__name__}.")
            # TorchRL's losses must call the actor and critic modules themselves, so that torch.func.functional_call
            # on them reaches the losses (see `_one_graph_step`)
            if loss.functional or (prior is not None and prior.functional):
                raise ValueError("compile_step=True needs the losses built with functional=False.")
        self.actor, self.critic, self.observation_norm = actor, critic, observation_norm
        self.lr, self.epochs, self.reward_scale, self.num_threads = lr, epochs, reward_scale, num_threads
        self.compile_backend = compile_backend
        # values come from `critic_values` (one critic pass per batch, not two): GAE only reads them.
        # vectorized: TorchRL 0.14.1's default (None) runs a Python loop over time steps, ~15x slower
        self.gae = GAE(gamma=gamma, lmbda=lmbda, value_network=None, average_gae=False, vectorized=True,
                       device=device)
        self.loss, self.prior = loss, prior
        # torch.compile of the minibatch losses (autograd then runs their compiled backward): on CPU a 500-row
        # minibatch is mostly Python, TensorDict and dispatch overhead, which compiling cuts by about 40%
        # (docs/performance.md); compiled once per run (shapes are fixed, stage values live in tensors), and only
        # the guards on the minibatch's tensors are checked per call (see `_minibatch_guards`); with compile_step
        # the losses are compiled into the one-graph step instead
        self.minibatch_losses = self._minibatch_losses
        if compile and not compile_step:
            self.minibatch_losses = torch.compile(_own_code(self._minibatch_losses), backend=compile_backend,
                                                  dynamic=False, options={"guard_filter_fn": _minibatch_guards})
        self.params = [*actor.parameters(), *critic.parameters()]
        self.optimizer = self._adam()
        self.max_grad_norm = max_grad_norm
        self.one_graph_step = None
        if compile_step:
            self.networks = _Networks(actor, critic, self._minibatch_losses)
            # constants of the graph, read here: reading the optimiser inside it would guard on the optimiser object,
            # which reset_optimizer replaces every stage (a recompile each time)
            adam = self.optimizer.defaults  # the values reset_optimizer's Adam gets too
            self.adam_hparams = (adam["lr"], adam["betas"], adam["eps"])
            self.max_grad_norm_tensor = torch.tensor(float(self.max_grad_norm), device=device)  # no recompile per stage
            self.one_graph_step = torch.compile(_own_code(self._one_graph_step), backend=compile_backend,
                                                dynamic=False, fullgraph=True,
                                                options={"guard_filter_fn": _minibatch_guards})
        # what the losses read (their in_keys, advantages, targets, and the masks TorchRL's losses look for):
        # minibatches are gathered from these keys only, 10 of the batch's 25
        keys = loss.tensor_keys
        self.minibatch_keys = list(dict.fromkeys([*loss.in_keys, keys.advantage, keys.value_target, keys.value,
                                                  *loss._loss_mask_keys(),
                                                  *(self.prior.in_keys if self.prior is not None else ())]))
        self.minibatch_size = minibatch_size
        self.device = device
        self.permutation: torch.Tensor | None = None  # the next epoch's row order, drawn ahead (see minibatches)

    def set_stage(self, hparams: dict[str, float]) -> None:
        self.loss.clip_epsilon.fill_(hparams["clip_epsilon"])
        if self.prior is not None:
            self.prior.coeff.fill_(hparams["latent_prior_coeff"])
        self.max_grad_norm = hparams["max_grad_norm"]
        if self.one_graph_step is not None:
            self.max_grad_norm_tensor.fill_(hparams["max_grad_norm"])

    def reset_optimizer(self) -> None:
        self.optimizer = self._adam()

    def _adam(self) -> torch.optim.Adam:
        # fused: one kernel for all parameters, 4x faster than foreach on 2 CPU cores (benchmarks/train_throughput.py)
        return torch.optim.Adam(self.params, lr=self.lr, fused=True)

    @torch.no_grad()
    def critic_values(self, data: TensorDictBase) -> TensorDictBase:
        """Writes the critic's ``"state_value"`` and ``("next", "state_value")`` into a ``[..., T]`` batch.

        TorchRL's GAE calls the critic on every observation and every next observation. Inside a trajectory the
        next observation is the following step's observation, so its value is read from the same pass; the critic
        runs again only where the next observation is not the following row: after a done (truncation included)
        and at the last step of the batch. That halves the evaluation cost of GAE with the same values.
        """
        in_keys, key = self.critic.in_keys, self.gae.tensor_keys.value
        value = self.critic(data.select(*in_keys)).get(key)
        fresh = data.get(("next", "done")).squeeze(-1).clone()
        fresh[..., -1] = True
        next_value = torch.cat([value[..., 1:, :], value[..., -1:, :]], dim=-2)
        next_value[fresh] = self.critic(data.get("next").select(*in_keys)[fresh]).get(key)
        data.set(key, value)
        data.set(("next", key), next_value)
        return data

    def gae_(self, data: TensorDictBase) -> TensorDictBase:
        """GAE advantages and value targets of a ``[..., T]`` batch under the current critic, in place."""
        return self.gae(self.critic_values(data))

    def update(self, data: TensorDictBase) -> dict[str, float]:
        """PPO epochs on one batch ``[num_envs, T]``; rewards are scaled here, the env's stay raw.

        Collection and update never overlap, so the update may use more intra-op threads
        (``num_threads``) than the tiny per-step policy calls of collection.
        """
        collect_threads = torch.get_num_threads()
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        try:
            return self._update(data)
        finally:
            torch.set_num_threads(collect_threads)

    def _update(self, data: TensorDictBase) -> dict[str, float]:
        data.set(("next", "reward"), data.get(("next", "reward")) * self.reward_scale)
        totals: dict[str, torch.Tensor] = {}
        count = 0
        if self.one_graph_step is not None:  # aliases of the parameters and Adam's state: updated in place
            weights = {name: p.detach() for name, p in self.networks.named_parameters()}
            moments = self._adam_moments()
        for _ in range(self.epochs):
            self.gae_(data)  # recomputed every epoch with the current critic
            rows = data.select(*self.minibatch_keys, strict=False).reshape(-1)
            for batch in self.minibatches(rows):
                if self.one_graph_step is not None:
                    losses, metrics = self.one_graph_step(weights, moments, batch.to_dict(), batch.batch_size,
                                                          self.max_grad_norm_tensor)
                else:
                    losses, metrics = self.minibatch_losses(batch)
                    metrics["grad_norm"] = self.step(sum(losses.values()))
                metrics.update(losses)
                for key, value in metrics.items():  # summed on the device: no host sync per minibatch
                    totals[key] = totals.get(key, 0.0) + value.detach().mean()
                count += 1
        return {f"train/{k}": float(v) / count for k, v in totals.items()}

    def step(self, loss: torch.Tensor) -> torch.Tensor:
        """One optimiser step on a minibatch's loss: its gradients, the joint global-norm clip and Adam. Returns the
        gradient norm before clipping.

        Runs eagerly, outside the compiled losses: the clip and the fused Adam step compiled as a graph of their own
        made the update slower on 2 CPU cores (``benchmarks/update_parts.py --ab``). ``compile_step`` instead
        compiles them into one graph with the losses and their gradients (:meth:`_one_graph_step`).
        """
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        return grad_norm

    def _one_graph_step(self, weights: dict[str, torch.Tensor], moments: dict[str, tuple[torch.Tensor, ...]],
                        tensors: dict[str, Any], batch_size: torch.Size, max_grad_norm: torch.Tensor):
        """``compile_step``: the whole minibatch step as one function, compiled into one graph: the losses, their
        gradients (``torch.func.grad`` through TorchRL's losses), the joint global-norm clip and Adam, which update
        ``weights`` (aliases of the parameters) and ``moments`` (the optimiser's state) in place.

        The same arithmetic as :meth:`step` with ``clip_grad_norm_`` and ``torch.optim.Adam`` (:func:`clip_and_adam_`;
        float rounding aside: the fused Adam kernel and inductor's kernels round differently, and the bias corrections
        use the float32 step count, as Adam's ``capturable`` path), with one graph call per minibatch instead
        of the compiled losses' forward and backward, the autograd engine, the clip and ``Optimizer.step``
        (``benchmarks/minibatch_step.py`` measured the structure on a plain-torch sketch). The minibatch comes in
        as plain tensors (TensorDict's functorch hooks cannot be traced) and is rebuilt inside.
        """
        def total_loss(weights):
            losses, metrics = torch.func.functional_call(self.networks, weights, (tensors, batch_size),
                                                         tie_weights=False)
            return sum(losses.values()), (losses, metrics)

        grads, (losses, metrics) = torch.func.grad(total_loss, has_aux=True)(weights)
        metrics["grad_norm"] = clip_and_adam_(weights, grads, moments, max_grad_norm, *self.adam_hparams)
        return losses, metrics

    def _adam_moments(self) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The optimiser's state per parameter name, created as ``torch.optim.Adam`` does on its first step: the
        compiled step updates it, so checkpoints and :meth:`reset_optimizer` work as with :meth:`step`."""
        moments = {}
        for name, param in self.networks.named_parameters():
            state = self.optimizer.state[param]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=torch.float32, device=param.device)
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            moments[name] = (state["step"], state["exp_avg"], state["exp_avg_sq"])
        return moments

    def minibatches(self, rows: TensorDictBase) -> Iterator[TensorDictBase]:
        """One epoch's minibatches of ``rows`` (flat): a random permutation of the rows, split in minibatches of
        ``frames per iteration / ppo.num_minibatches`` rows (a smaller batch gets fewer of the same size).

        The rows are indexed directly rather than through a TorchRL replay buffer (its storage copy and sampling
        cost a tenth of a 500-row minibatch on CPU), with the RNG stream of TorchRL's ``SamplerWithoutReplacement``,
        which draws the next permutation when the last minibatch of an epoch is taken. The epoch is gathered once
        and split into views: one index per key and epoch instead of one per minibatch, the same values.
        """
        num_rows = rows.numel()
        permutation = self.permutation
        if permutation is None or permutation.numel() != num_rows:
            permutation = torch.randperm(num_rows, device=self.device)
        chunks = rows[permutation].split(self.minibatch_size)
        for i, batch in enumerate(chunks):
            if i == len(chunks) - 1:
                self.permutation = torch.randperm(num_rows, device=self.device)
            yield batch

    def _minibatch_losses(self, batch: TensorDictBase) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The loss terms (``loss_*``) and the other outputs of one minibatch."""
        out = self.loss(batch)
        metrics = {key: value for key, value in out.items() if not key.startswith("loss_")}
        losses = {key: value for key, value in out.items() if key.startswith("loss_")}
        if self.prior is not None:
            prior = self.prior(batch)
            losses["loss_latent_prior"] = prior["loss_latent_prior"]
            metrics["latent_scale_mean"] = prior["latent_scale_mean"]
        return losses, metrics

    @torch.no_grad()
    def advantages(self, data: TensorDictBase) -> torch.Tensor:
        """GAE advantages of a batch under the current critic, rewards scaled as in the update."""
        data = data.select("observation", "next", "state_value", strict=False).clone(False)
        data.set(("next", "reward"), data.get(("next", "reward")) * self.reward_scale)
        return self.gae_(data).get("advantage")

    def state_dict(self) -> dict[str, Any]:
        # the next epoch's permutation is drawn ahead: part of the RNG stream
        return {"optimizer": self.optimizer.state_dict(), "permutation": self.permutation}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        permutation = state["permutation"]
        self.permutation = None if permutation is None else permutation.to(self.device)


def clip_and_adam_(weights: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
                   moments: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]], max_grad_norm: torch.Tensor,
                   lr: float, betas: tuple[float, float], eps: float) -> torch.Tensor:
    """``clip_grad_norm_`` over all ``grads`` jointly, then ``torch.optim.Adam``'s update (weight decay 0, no
    amsgrad) of ``weights`` and of ``moments`` (per name: step count, first and second moment), all in place and in
    plain tensor ops, so that it compiles into the graph of :meth:`PPOUpdate._one_graph_step`. Returns the gradient
    norm before clipping."""
    beta1, beta2 = betas
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads.values()]))
    clip = (max_grad_norm / (norm + 1e-6)).clamp(max=1.0)
    for name, weight in weights.items():
        step, exp_avg, exp_avg_sq = moments[name]
        grad = grads[name] * clip
        step.add_(1)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = exp_avg_sq.sqrt() / (1 - beta2**step).sqrt() + eps
        weight.sub_(lr / (1 - beta1**step) * exp_avg / denom)
    return norm


class _Networks(torch.nn.Module):
    """The actor and the critic as one module whose forward is the minibatch losses, for ``torch.func``."""

    def __init__(self, actor: torch.nn.Module, critic: torch.nn.Module, losses: Callable) -> None:
        super().__init__()
        self.actor, self.critic = actor, critic
        self.losses = losses  # a bound method of PPOUpdate, not a submodule

    def forward(self, tensors: dict[str, Any], batch_size: torch.Size):
        return self.losses(TensorDict(tensors, batch_size=batch_size))


def _minibatch_guards(guards: Sequence[Any]) -> list[bool]:
    """torch.compile guard filter of the minibatch losses: keeps the guards on the minibatch's tensors (keys, shapes,
    dtypes) and drops those on modules and globals.

    Checking all of them cost about 1 ms per call on 2 cores, a tenth of a minibatch's update
    (``benchmarks/update_parts.py --profile``: ``TorchDynamo Cache Lookup``). Within one
    :class:`PPOUpdate` none of the dropped ones can fail: its modules keep their structure and attributes (weights are
    updated in place and read at every call; stage values live in tensors), and the globals are imports, hooks and
    modes that the update never changes (it runs outside any exploration-type context). Another ``PPOUpdate`` in the
    same process, whose modules differ, never meets these graphs: each compiles its own copy of the code
    (:func:`_own_code`). Among the dropped guards is the size of tensordict's tensorclass memo (a cache of "is this
    class a tensorclass"), which grows when the refit first builds other TensorDicts and used to recompile the
    minibatch losses at stage 1 (a minute on 2 cores) for an identical graph."""
    modules = torch.compiler.skip_guard_on_all_nn_modules_unsafe(guards)
    globals_ = torch.compiler.skip_guard_on_globals_unsafe(guards)
    return [a and b for a, b in zip(modules, globals_)]


def _own_code(method: Callable) -> Callable:
    """``method`` bound to a private copy of its function's code object. Dynamo keeps compiled graphs per code
    object, so the graphs compiled through the copy serve this instance only; with the guards on its modules dropped
    (:func:`_minibatch_guards`), a graph of another instance (other sizes, ``normalize_advantage``, loss type) would
    otherwise run here unchecked."""
    func = method.__func__
    own = types.FunctionType(func.__code__.replace(), func.__globals__, func.__name__, func.__defaults__,
                             func.__closure__)
    own.__qualname__ = func.__qualname__
    return types.MethodType(own, method.__self__)
