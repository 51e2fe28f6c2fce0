"""The built-in rewards, registered like any plugin's: ``correctness``, ``schema``, ``terminology``,
``negatives``, ``overreach`` and ``length``.

Each takes the answers as text and the record fields, and returns one float per answer. A reward that
needs the reference answer returns 0.0 for records without one (no signal, so it neither helps nor hurts).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from medvlab.train.evaluate import tokens
from medvlab.train.rewards.registry import reward
from medvlab.train.rewards.text import (
    certain,
    count_terms,
    hedges,
    json_object,
    kept,
    lexicon,
    negated_findings,
    yes_no,
)
from medvlab.vlm.structured import FIELDS, findings_model

LENGTH_TARGET = 60
"""Answer length (English words + Chinese characters) the ``length`` reward aims at without a reference."""


def _references(reference: list[str | None] | None, n: int) -> list[str | None]:
    return list(reference) if reference is not None else [None] * n


@reward("correctness")
def correctness(completions: list[str], reference: list[str | None] | None = None, **_: Any) -> list[float]:
    """Closed (yes/no) questions: 1.0 when the answer's yes/no matches the reference's, else 0.0.

    Read from how each starts, in English (yes/no/not …) or Chinese (是/有/可见 …, 否/无/没有/未见 …).
    0.0 where the reference is missing or is not a yes/no answer.
    """
    out = []
    for answer, ref in zip(completions, _references(reference, len(completions)), strict=True):
        want = yes_no(ref) if ref else None
        out.append(float(want is not None and yes_no(answer) == want))
    return out


@reward("schema")
def schema(completions: list[str], **_: Any) -> list[float]:
    """Structured answers: 1.0 when the answer is a JSON object valid against the lab's findings schema
    (findings, location, size, impression, confidence low/moderate/high, recommendations); a JSON object
    that is not valid earns 0.5 x the share of those fields it has; anything else 0.0."""
    model = findings_model()
    out = []
    for answer in completions:
        data = json_object(answer)
        if data is None:
            out.append(0.0)
            continue
        try:
            model.model_validate(data)
            out.append(1.0)
        except ValidationError:
            out.append(0.5 * sum(1 for f in FIELDS if f in data) / len(FIELDS))
    return out


@reward("terminology")
def terminology(completions: list[str], **_: Any) -> list[float]:
    """Standard terms over colloquial ones, from the shipped bilingual lexicon (``lexicon.tsv``):
    (standard - colloquial) / (standard + colloquial) occurrences, in [-1, 1]; 0.0 when neither occurs.

    "左下肺野" counts as standard, "左边下面" as colloquial; "pleural effusion" vs "water on the lung".
    """
    lex = lexicon()
    out = []
    for answer in completions:
        colloquial, rest = count_terms(answer.lower(), lex.colloquial)
        standard = count_terms(rest, lex.standard)[0]
        total = standard + colloquial
        out.append((standard - colloquial) / total if total else 0.0)
    return out


@reward("negatives")
def negatives(completions: list[str], reference: list[str | None] | None = None, **_: Any) -> list[float]:
    """Key negative findings kept: the share of the findings the reference negates ("no pneumothorax",
    "未见气胸") that the answer negates too. 0.0 where the reference negates nothing (or is missing)."""
    out = []
    for answer, ref in zip(completions, _references(reference, len(completions)), strict=True):
        wanted = negated_findings(ref) if ref else set()
        if not wanted:
            out.append(0.0)
            continue
        said = negated_findings(answer)
        out.append(sum(kept(f, said) for f in wanted) / len(wanted))
    return out


@reward("overreach")
def overreach(completions: list[str], reference: list[str | None] | None = None, **_: Any) -> list[float]:
    """Certainty penalty where the reference hedges ("possible pneumonia", "考虑肺炎"): -1.0 for an answer
    claiming certainty ("definitely", "确诊"), -0.5 for one stating it flatly (no hedge), 0.0 for one that
    hedges too; 0.0 when the reference does not hedge or is missing."""
    out = []
    for answer, ref in zip(completions, _references(reference, len(completions)), strict=True):
        if not ref or not hedges(ref) or (hedges(answer) and not certain(answer)):
            out.append(0.0)
        else:
            out.append(-1.0 if certain(answer) else -0.5)
    return out


@reward("length")
def length(completions: list[str], reference: list[str | None] | None = None, **_: Any) -> list[float]:
    """Length close to the reference's (else to ``LENGTH_TARGET``), counting English words and Chinese
    characters: min(n, target) / max(n, target), 1.0 at the target, 0.5 at half or double; 0.0 if empty."""
    out = []
    for answer, ref in zip(completions, _references(reference, len(completions)), strict=True):
        n = len(tokens(answer))
        target = len(tokens(ref)) if ref and tokens(ref) else LENGTH_TARGET
        out.append(min(n, target) / max(n, target) if n else 0.0)
    return out
