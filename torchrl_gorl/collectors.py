"""A TorchRL collector for a process of its own (a Ray actor): seeding covers the policy's sampling too."""
from __future__ import annotations

from typing import Any

import torch
from torchrl.collectors import Collector


class SeededCollector(Collector):
    """A :class:`~torchrl.collectors.Collector` whose :meth:`set_seed` also seeds the torch RNG of its process.

    ``Collector.set_seed`` seeds the envs only; the policy's sampling (the GoRL latent noise) draws from the
    process's torch RNG. In the trainer's process the scripts seed that RNG themselves around each batch; in a
    remote worker (``collector.backend=ray`` runs one of these per Ray actor) nothing else can, so this
    collector does: with ``reset_at_each_iter=True``, a batch is then a function of the policy and the seed.
    Seed it only where it owns the process: ``torch.manual_seed`` is process-wide.

    Keyword Args:
        num_threads (int, optional): torch intra-op threads of the process, set at construction (a worker
            stepping batched envs with a small policy runs fastest on one). ``None`` leaves them as they are.
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

    def __init__(self, *args: Any, num_threads: int | None = None, **kwargs: Any) -> None:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        super().__init__(*args, **kwargs)

    def set_seed(self, seed: int, static_seed: bool = False) -> int:
        torch.manual_seed(seed)
        out = super().set_seed(seed, static_seed=static_seed)
        if not self.reset_at_each_iter:  # seeding resets the envs: the observations the collector carries must follow
            self.reset()
        return out
