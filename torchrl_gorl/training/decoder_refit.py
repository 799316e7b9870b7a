"""Supervised refit of a GoRL decoder on (observation, pre-squash action) pairs, with early stopping."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from tensordict import TensorDictBase

from torchrl_gorl.objectives.decoder_loss import GenerativeDecoderLoss
from torchrl_gorl.training.datasets import TRANSITION_KEYS


def decoder_rows(data: TensorDictBase, *, advantage: torch.Tensor | None = None,
                 transitions: bool = False) -> TensorDictBase:
    """The decoder's training rows of a ``[num_envs, T]`` batch, flattened to ``[num_envs * T]``: (observation,
    pre-squash action); with ``advantage`` (the stage critic's GAE of the batch, for a GMPO-weighted refit) its values
    standardised over the batch as ``"advantage"``; with ``transitions`` the keys of an offline dataset
    (:data:`~torchrl_gorl.training.TRANSITION_KEYS`) too.

    >>> from tensordict import TensorDict
    >>> data = TensorDict({"observation": torch.zeros(2, 3, 5), "action": torch.zeros(2, 3, 1)}, [2, 3])
    >>> decoder_rows(data, advantage=torch.arange(6.0).view(2, 3, 1))["advantage"].shape
    torch.Size([6, 1])
    """
    keys = ["observation", "action"]
    if transitions:
        keys += [key for key in TRANSITION_KEYS if key not in keys]
    rows = data.select(*keys)
    if advantage is not None:
        rows.set("advantage", (advantage - advantage.mean()) / advantage.std().clamp_min(1e-6))
    return rows.reshape(-1)


@dataclass
class RefitResult:
    """What :func:`refit_decoder` did: losses per epoch, the best epoch and the data sizes."""

    best_val_loss: float
    best_epoch: int
    epochs_run: int
    num_train: int
    num_val: int
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)


def refit_decoder(
    loss_fn: GenerativeDecoderLoss,
    data: TensorDictBase,
    *,
    batch_size: int = 8192,
    lr: float = 3e-4,
    max_epochs: int = 50,
    patience: int = 20,
    val_fraction: float = 0.1,
    max_samples: int | None = None,
    action_clip: float | None = None,
    reset_statistics: bool = True,
    seed: int = 0,
) -> RefitResult:
    """Fits ``loss_fn``'s decoder to ``data`` and leaves it at its best validation loss.

    The reference's procedure (gorl-reference.md §3.4), seeded: optionally subsample
    ``max_samples`` rows without replacement, split ``1 - val_fraction`` / ``val_fraction``, set the
    decoder's observation statistics from the training split, then run Adam for up to
    ``max_epochs`` epochs of full minibatches, stopping after ``patience`` epochs without a better
    validation loss. The validation loss draws the same (noise, time) samples at every epoch, so
    epochs are compared on equal terms. Training noise comes from the global torch RNG.

    Args:
        loss_fn (GenerativeDecoderLoss): e.g. :class:`~torchrl_gorl.FlowMatchingLoss`; its keys say
            which entries of ``data`` are read.
        data (TensorDictBase): flat ``[N]`` pairs (observation, pre-squash action, optional weight).

    Keyword Args:
        batch_size, lr, max_epochs, patience, val_fraction, max_samples: as above.
        action_clip (float, optional): fit to the target actions clamped to ``[-action_clip, action_clip]``
            (``data`` is not changed). The targets are pre-squash actions: past about 3 the env's ``tanh``
            barely tells them apart, but the generative loss weighs their errors in full. Defaults to
            ``None``: the actions as given (the reference).
        reset_statistics (bool): recompute the decoder's observation statistics from the
            training split. Defaults to ``True``.
        seed (int): seeds subsampling, the split, shuffling and the validation noise.

    Raises:
        ValueError: before any training, if a setting is out of range or the data cannot give one
            training row and one validation row.
        RuntimeError: if no epoch gives a finite validation loss (the decoder is then restored).
    """
    for name, value in (("batch_size", batch_size), ("max_epochs", max_epochs), ("patience", patience)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}.")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}.")
    if action_clip is not None and not action_clip > 0:
        raise ValueError(f"action_clip must be positive or None, got {action_clip!r}.")
    if data.batch_dims != 1:
        data = data.reshape(-1)
    generator = torch.Generator().manual_seed(seed)
    n = data.shape[0]
    if max_samples is not None and n > max_samples:
        data = data[torch.randperm(n, generator=generator)[:max_samples]]
        n = max_samples
    if action_clip is not None:  # only the kept rows; a shallow copy: the caller's actions stay as they were
        action_key = loss_fn.tensor_keys.action
        data = data.clone(recurse=False).set(action_key, data.get(action_key).clamp(-action_clip, action_clip))
    num_val = int(round(n * val_fraction))
    num_train = n - num_val
    if num_val < 1 or num_train < 1:
        raise ValueError(f"refit_decoder needs at least one training and one validation row; got {n} rows.")
    perm = torch.randperm(n, generator=generator)
    train, val = data[perm[:num_train]], data[perm[num_train:]]

    decoder = loss_fn.decoder_network
    device = next(decoder.parameters()).device
    observation_key = loss_fn.tensor_keys.observation
    if reset_statistics:
        decoder.observation_norm.reset()
        decoder.observation_norm.update(train.get(observation_key).to(device))
    optimizer = torch.optim.Adam(decoder.parameters(), lr=lr)
    batch_size = min(batch_size, num_train)
    val_seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
    name = loss_fn.out_keys[0]

    def validation_loss() -> float:
        total = 0.0
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(val_seed)
            for chunk in val.split(batch_size):
                total += loss_fn(chunk.to(device))[name].item() * chunk.shape[0]
        return total / num_val

    result = RefitResult(best_val_loss=math.inf, best_epoch=-1, epochs_run=0, num_train=num_train, num_val=num_val)
    best_state = copy.deepcopy(decoder.state_dict())
    for epoch in range(max_epochs):
        order = torch.randperm(num_train, generator=generator)
        epoch_loss = 0.0
        num_batches = num_train // batch_size  # the last partial batch is dropped
        for i in range(num_batches):
            batch = train[order[i * batch_size : (i + 1) * batch_size]].to(device)
            loss = loss_fn(batch)[name]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epoch_loss += loss.item()
        result.train_losses.append(epoch_loss / num_batches)
        result.val_losses.append(validation_loss())
        result.epochs_run = epoch + 1
        if result.val_losses[-1] < result.best_val_loss:
            result.best_val_loss, result.best_epoch = result.val_losses[-1], epoch
            best_state = copy.deepcopy(decoder.state_dict())
        elif epoch - result.best_epoch >= patience:
            break
    decoder.load_state_dict(best_state)
    if result.best_epoch < 0:
        raise RuntimeError(f"decoder refit found no finite validation loss in {result.epochs_run} epochs: {result.val_losses}.")
    return result
