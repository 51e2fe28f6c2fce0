"""Rewards for GRPO and for ranking sampled answers: a registry, the built-ins, and user plugins.

``from medvlab.train.rewards import reward`` gives plugin files the decorator; see
:mod:`medvlab.train.rewards.registry` for the contract and :mod:`medvlab.train.rewards.builtin` for the
built-in rewards.
"""

from medvlab.train.rewards import builtin as _builtin  # noqa: F401  (registers the built-ins)
from medvlab.train.rewards.registry import (
    REGISTRY,
    Reward,
    get,
    load_plugin,
    parse_spec,
    resolve_rewards,
    reward,
)
from medvlab.train.rewards.text import answer_text

__all__ = [
    "REGISTRY",
    "Reward",
    "answer_text",
    "get",
    "load_plugin",
    "parse_spec",
    "resolve_rewards",
    "reward",
]
