"""Text helpers the built-in rewards share: answer text, yes/no, negated findings, hedges, the lexicon.

Rule-based on purpose (a reward is computed on every sampled answer, thousands of times a step, and must
be explainable to the clinicians who choose it); the lists below are the whole of each rule.
"""

from __future__ import annotations

import csv
import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from medvlab.train.evaluate import NO, YES, tokens
from medvlab.vlm.remote import ThinkingText

_CJK = re.compile(r"[\u3400-\u9fff]")
# Closed answers in Chinese, longest first: the answer's first characters decide.
ZH_NO = ("没有", "未见", "未发现", "不存在", "不是", "阴性", "无", "否", "不")
ZH_YES = ("是的", "存在", "可见", "阳性", "有", "是", "对")
EN_NO = NO | {"not", "none", "negative", "absent"}
EN_YES = YES | {"positive", "present"}


def answer_text(completion: Any) -> str:
    """The answer as plain text: TRL's conversational completion joined, MedGemma's thinking span removed."""
    if isinstance(completion, list):  # [{"role": "assistant", "content": str | parts}]
        completion = " ".join(_content_text(m.get("content")) for m in completion if isinstance(m, dict))
    text = str(completion or "")
    thinking = ThinkingText()
    return (thinking.feed(text) + thinking.flush()).strip()


def _content_text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return str(content or "")


def is_zh(text: str) -> bool:
    return bool(_CJK.search(text))


def yes_no(text: str) -> str | None:
    """'yes' / 'no' from how an answer starts (是/有/可见 …, 否/无/没有/未见 …; yes/no/not …), else None."""
    head = re.sub(r"^[\s\"'“”‘’（(【\[]+", "", text.strip().lower())
    if _CJK.match(head):
        for word in ZH_NO:  # the negations first: 没有 starts with 没, 不是 must not read as 是
            if head.startswith(word):
                return "no"
        for word in ZH_YES:
            if head.startswith(word):
                return "yes"
        return None
    for word in tokens(head)[:3]:
        if word in EN_YES:
            return "yes"
        if word in EN_NO:
            return "no"
    return None


# --- negative findings -------------------------------------------------------------------------------
EN_NEGATION = re.compile(
    r"\b(?:no|without|negative for|free of|absence of|absent)\s+"
    r"(?:(?:evidence|signs?|features?)\s+of\s+|(?:definite|obvious|acute|significant|focal)\s+)*"
    r"([a-z][a-z\- ]*?)(?=\s*(?:[.,;:!?\n()]|$|\bis\b|\bare\b|\bwas\b|\bseen\b|\bbut\b|\bwith\b))"
)
ZH_NEGATION = re.compile(
    r"(?:未见|未发现|未显示|没有|不伴|无)(?:明显|明确|确切)?([\u3400-\u9fff、及和或与]+)"
)
EN_SPLIT = re.compile(r"\s*(?:,|\bor\b|\band\b|\bnor\b)\s*")
ZH_SPLIT = re.compile(r"[、及和或与]")
ZH_TAIL = ("征象", "表现", "改变", "影")


def negated_findings(text: str) -> set[str]:
    """The findings ``text`` says are absent: "no pneumothorax or effusion" -> {pneumothorax, effusion}."""
    found: set[str] = set()
    lower = text.lower()
    for m in EN_NEGATION.finditer(lower):
        for part in EN_SPLIT.split(m.group(1)):
            words = [w for w in part.split() if w not in ("a", "an", "the", "any", "no")]
            if words:
                found.add(" ".join(words))
    for m in ZH_NEGATION.finditer(text):
        for part in ZH_SPLIT.split(m.group(1)):
            for tail in ZH_TAIL:  # 未见气胸征象 -> 气胸
                if part.endswith(tail) and len(part) > len(tail) + 1:
                    part = part[: -len(tail)]
            if len(part) >= 2:
                found.add(part)
    return found


def kept(finding: str, answer_negatives: set[str]) -> bool:
    """The answer negates ``finding`` too (one phrase contains the other: 'effusion' ~ 'pleural effusion')."""
    return any(finding in a or a in finding for a in answer_negatives)


# --- certainty ------------------------------------------------------------------------------------------
EN_HEDGES = (
    "possible", "possibly", "probable", "probably", "likely", "may", "might", "could", "suggest",
    "suggests", "suggestive", "suspicious", "suspected", "cannot exclude", "cannot be excluded",
    "can't exclude", "not excluded", "consider", "differential", "uncertain", "equivocal", "questionable",
)  # fmt: skip
ZH_HEDGES = ("可能", "考虑", "疑似", "疑为", "不除外", "不排除", "待排", "倾向", "建议进一步", "可疑", "提示")
EN_CERTAIN = (
    "definitely", "definite", "definitive", "certainly", "certain", "confirmed", "confirms", "diagnostic of",
    "undoubtedly", "clearly", "unequivocal", "unequivocally", "without doubt", "is diagnosed", "100%",
)  # fmt: skip
ZH_CERTAIN = ("确诊", "明确为", "肯定", "必然", "毫无疑问", "一定是", "无疑", "可以确定", "确定为")


def _has_any(text: str, english: tuple[str, ...], chinese: tuple[str, ...]) -> bool:
    lower = text.lower()
    if any(w in text for w in chinese):
        return True
    return any(re.search(rf"(?<![a-z]){re.escape(w)}(?![a-z])", lower) for w in english)


def hedges(text: str) -> bool:
    """The text expresses uncertainty ("possible", "cannot exclude", "考虑", "不除外" …)."""
    return _has_any(text, EN_HEDGES, ZH_HEDGES)


def certain(text: str) -> bool:
    """The text claims certainty ("definitely", "confirmed", "确诊", "明确为" …)."""
    return _has_any(text, EN_CERTAIN, ZH_CERTAIN)


# --- structured answers -------------------------------------------------------------------------------
def json_object(text: str) -> dict[str, Any] | None:
    """The JSON object in an answer (bare, or in a ```json fence, or amid prose), else None."""
    fenced = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.S)
    candidates = [fenced.group(1)] if fenced else []
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            data = json.loads(candidate, strict=False)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            return data
    return None


# --- terminology --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lexicon:
    """Standard terms and their colloquial stand-ins, longest first (a longer phrase is matched first)."""

    standard: tuple[str, ...]
    colloquial: tuple[str, ...]


@functools.cache
def lexicon() -> Lexicon:
    """The bilingual lexicon shipped as ``train/rewards/lexicon.tsv`` (standard, colloquial, language)."""
    text = resources.files("medvlab.train.rewards").joinpath("lexicon.tsv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t"))
    standard = {r["standard"].strip().lower() for r in rows}
    colloquial = {r["colloquial"].strip().lower() for r in rows}
    by_length = functools.partial(sorted, key=lambda t: (-len(t), t))
    return Lexicon(tuple(by_length(standard)), tuple(by_length(colloquial)))


def count_terms(text: str, terms: tuple[str, ...]) -> tuple[int, str]:
    """(occurrences of ``terms`` in ``text``, the text with them blanked), longest terms first."""
    n = 0
    for term in terms:
        pattern = re.escape(term) if is_zh(term) else rf"(?<![a-z]){re.escape(term)}(?![a-z])"
        text, k = re.subn(pattern, " ", text)
        n += k
    return n, text
