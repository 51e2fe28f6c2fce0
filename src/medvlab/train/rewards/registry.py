"""The reward registry: ``@reward("name")`` registers a scoring function; plugins are plain .py files.

A reward scores a group of answers to the same kind of record::

    from medvlab.train.rewards import reward

    @reward("mentions_side")
    def mentions_side(completions: list[str], reference: list[str | None], **fields) -> list[float]:
        '''1.0 when the answer names a side (left/right), else 0.0.'''
        return [float("left" in c.lower() or "right" in c.lower()) for c in completions]

``completions`` are the answers as plain text (MedGemma's thinking span already removed); keyword
arguments are the record fields, one list entry per answer: ``reference`` (the reference answer or
None), ``question`` (the user's text) and every other top-level field of the JSONL record. A function
receives only the fields it names, or all of them when it takes ``**fields``. It returns one float per
answer. As ms-swift's ``--external_plugins``, ``medvlab train grpo|sample --reward-plugin my.py``
imports the file, whose decorators register its rewards under their names.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvlab.errors import ConfigError, look_up_option

logger = logging.getLogger(__name__)

RewardFn = Callable[..., Sequence[float]]
STANDARD_FIELDS = ("reference", "question")
PROBE: dict[str, list[Any]] = {
    "completions": ["No pneumothorax.", "未见气胸。"],
    "reference": ["No pneumothorax.", None],
    "question": ["Is there a pneumothorax?", "有气胸吗？"],
}
"""Two sample answers every plugin reward is called on when its file is loaded (a return check)."""


@dataclass(frozen=True)
class Reward:
    """A registered reward function and where it came from."""

    name: str
    func: RewardFn
    source: str
    """``built-in`` or the plugin file that registered it."""
    fields: frozenset[str] | None
    """The record fields the function takes by name; None when it takes ``**fields`` (all of them)."""
    required: frozenset[str] = frozenset()
    """The named fields without a default: the data must have them."""

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.func) or ""

    def __call__(self, completions: Sequence[str], **fields: Sequence[Any]) -> list[float]:
        """Scores, checked: one finite float per answer (a broken reward stops the run with its source)."""
        given = fields if self.fields is None else {k: v for k, v in fields.items() if k in self.fields}
        missing = sorted(self.required - set(fields))
        if missing:
            raise ConfigError(
                f"Reward '{self.name}' ({self.source}) needs the record field(s) {', '.join(missing)}, "
                "which the data does not have.",
                "Add the field(s) to every JSONL record, or make them optional (**fields).",
            )
        out = self.func(list(completions), **{k: list(v) for k, v in given.items()})
        return check_scores(self, out, len(completions))


REGISTRY: dict[str, Reward] = {}
_loading: list[str] = []  # the plugin file being imported (source of the rewards it registers)


def _signature_fields(name: str, func: Any, where: str) -> tuple[frozenset[str] | None, frozenset[str]]:
    """(fields ``func`` takes or None for all, fields it requires); raises unless ``completions`` is first."""
    fix = "Define it as `def f(completions: list[str], **fields) -> list[float]`."
    if not callable(func):
        raise ConfigError(f"@reward('{name}') in {where} decorates {func!r}, not a function.", fix)
    params = list(inspect.signature(func).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not positional or positional[0].name != "completions":
        raise ConfigError(f"Reward '{name}' in {where} must take `completions` as its first argument.", fix)
    named = [p for p in params[1:] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    required = frozenset(p.name for p in named if p.default is p.empty)
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None, required
    return frozenset(p.name for p in named), required


def reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Register the decorated function as reward ``name`` (usable as ``--reward name[=weight]``)."""
    if not isinstance(name, str) or not name.strip() or "=" in name or "," in name:
        raise ConfigError(f"Reward name {name!r} is not usable.", "Use a short name without '=' or ','.")

    def register(func: RewardFn) -> RewardFn:
        source = _loading[-1] if _loading else "built-in"
        fields, required = _signature_fields(name, func, source)
        old = REGISTRY.get(name)
        if old is not None and old.source != source:
            raise ConfigError(
                f"Reward '{name}' in {source} is already registered by {old.source}.",
                "Give the reward another name.",
            )
        REGISTRY[name] = Reward(name, func, source, fields, required)
        return func

    return register


def check_scores(rw: Reward, out: Any, n: int) -> list[float]:
    fix = f"Make '{rw.name}' ({rw.source}) return one float per completion, e.g. [1.0, 0.0, ...]."
    if isinstance(out, (str, bytes)) or not isinstance(out, Sequence):
        raise ConfigError(f"Reward '{rw.name}' returned {type(out).__name__}, not a list.", fix)
    if len(out) != n:
        raise ConfigError(f"Reward '{rw.name}' returned {len(out)} score(s) for {n} completion(s).", fix)
    scores = []
    for v in out:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"Reward '{rw.name}' returned {v!r}, not a finite number.", fix)
        scores.append(float(v))
    return scores


def get(name: str) -> Reward:
    """The reward registered as ``name``; an unknown name says which one was meant."""
    return REGISTRY[look_up_option(name, sorted(REGISTRY), "reward")]


def parse_spec(spec: str) -> tuple[str, float]:
    """``name`` or ``name=weight`` -> (registered name, weight)."""
    name, sep, weight = spec.partition("=")
    value = 1.0
    if sep:
        try:
            value = float(weight)
        except ValueError:
            raise ConfigError(
                f"The weight in --reward '{spec}' is not a number.",
                "Write NAME=WEIGHT, e.g. terminology=0.5.",
            ) from None
        if not math.isfinite(value):
            raise ConfigError(f"The weight in --reward '{spec}' is not finite.", "Use e.g. 0.5.")
    return get(name.strip()).name, value


def resolve_rewards(specs: Sequence[str], plugins: Sequence[Path] = ()) -> list[tuple[Reward, float]]:
    """Load the plugin files, then look up each ``name[=weight]``; at least one, no duplicates."""
    for path in plugins:
        load_plugin(Path(path))
    if not specs:
        raise ConfigError(
            "No reward was chosen.", f"Pass --reward NAME[=WEIGHT], one of: {', '.join(sorted(REGISTRY))}."
        )
    chosen: list[tuple[Reward, float]] = []
    for spec in specs:
        name, weight = parse_spec(spec)
        if any(rw.name == name for rw, _ in chosen):
            raise ConfigError(f"Reward '{name}' is given twice.", "Pass each --reward once.")
        chosen.append((REGISTRY[name], weight))
    return chosen


def load_plugin(path: Path) -> list[str]:
    """Import the user file ``path``; returns the names of the rewards it registered.

    Every way the file can be unusable (missing, not Python, a syntax error, an exception on import,
    nothing registered, a function that does not return one float per answer) is one ConfigError that
    names the file and the fix.
    """
    path = Path(path).expanduser()
    where = str(path)
    if not path.is_file():
        raise ConfigError(f"The reward plugin '{where}' does not exist.", "Check the --reward-plugin path.")
    if path.suffix != ".py":
        raise ConfigError(f"The reward plugin '{where}' is not a .py file.", "Pass a Python file.")
    resolved = str(path.resolve())
    already = [rw.name for rw in REGISTRY.values() if rw.source == resolved]
    if already:  # loaded before in this process: its rewards are registered
        return already
    before = set(REGISTRY)
    module_name = f"medvlab_reward_plugin_{abs(hash(resolved))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"The reward plugin '{where}' cannot be imported.", "Pass a Python file.")
    module = importlib.util.module_from_spec(spec)
    _loading.append(resolved)
    try:
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise ConfigError(
            f"The reward plugin '{where}' has a syntax error on line {exc.lineno}: {exc.msg}.",
            "Fix the Python syntax.",
        ) from exc
    except ConfigError as exc:  # a bad @reward(...) use: already names the file
        sys.modules.pop(module_name, None)
        raise exc
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ConfigError(
            f"The reward plugin '{where}' raised {type(exc).__name__} on import: {exc}",
            "Run `python " + where + "` to see the traceback, and fix it.",
        ) from exc
    finally:
        _loading.pop()
    added = sorted(set(REGISTRY) - before)
    if not added:
        raise ConfigError(
            f"The reward plugin '{where}' registered no reward.",
            "Decorate a function with @reward('name') (from medvlab.train.rewards import reward).",
        )
    for name in added:
        _probe(REGISTRY[name])
    logger.info("reward plugin %s registered: %s", where, ", ".join(added))
    return added


def _probe(rw: Reward) -> None:
    """Call a plugin reward on two sample answers so a wrong return type shows now, not mid-training.

    A reward that needs fields of the user's own data cannot be probed and is checked at its first call.
    """
    if not rw.required <= set(STANDARD_FIELDS):
        return
    fields = {k: v for k, v in PROBE.items() if k != "completions"}
    if rw.fields is not None:
        fields = {k: v for k, v in fields.items() if k in rw.fields}
    try:
        out = rw.func(list(PROBE["completions"]), **fields)
    except Exception as exc:
        raise ConfigError(
            f"Reward '{rw.name}' ({rw.source}) raised {type(exc).__name__} on a sample answer: {exc}",
            "Make it accept any text answer and reference=None (records without a reference).",
        ) from exc
    check_scores(rw, out, len(PROBE["completions"]))
