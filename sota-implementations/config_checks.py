"""Config checks shared by the scripts: each reads one key and raises a ``ValueError`` naming the key and the bad
value, so that a bad config fails at start-up, before any env or model is built."""
from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf


def positive_int(cfg: DictConfig, key: str) -> int:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"config key {key} must be a positive integer, got {value!r}.")
    return value


def positive_float(cfg: DictConfig, key: str, *, allow_zero: bool = False) -> float:
    value = OmegaConf.select(cfg, key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"config key {key} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}.")
    return float(value)


def int_list(cfg: DictConfig, key: str) -> list[int]:
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, (ListConfig, list)) or len(value) == 0:
        raise ValueError(f"config key {key} must be a non-empty list, got {value!r}.")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"config key {key}[{i}] must be a positive integer, got {v!r}.")
    return list(value)


def choice(cfg: DictConfig, key: str, choices: Sequence[str]) -> str:
    value = OmegaConf.select(cfg, key)
    if value not in choices:
        raise ValueError(f"config key {key} must be one of {list(choices)}, got {value!r}.")
    return value
