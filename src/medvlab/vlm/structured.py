"""Structured answers: a JSON schema enforced while decoding, so the output always parses.

Decoding is constrained with xgrammar (a grammar-constrained logits processor for transformers): at
every step only tokens that keep the text a valid prefix of the schema's JSON are allowed. Strings have
a maximum length and whitespace is compact, so a complete object fits a known token budget.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from medvlab.errors import RequestError, StructuredOutputError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
FIELDS = ("findings", "location", "size", "impression", "confidence", "recommendations")


def findings_model(max_chars: int = 400) -> type[BaseModel]:
    """The report schema, with every free-text field capped at ``max_chars`` characters."""

    class Findings(BaseModel):
        findings: str = Field(max_length=max_chars, description="What is visible.")
        location: str = Field(max_length=max_chars // 2, description="Where (anatomy, side, slice).")
        size: str = Field(max_length=max_chars // 4, description="Measured or estimated size, or 'n/a'.")
        impression: str = Field(max_length=max_chars, description="Most likely interpretation.")
        confidence: Literal["low", "moderate", "high"]
        recommendations: str = Field(max_length=max_chars // 2, description="Suggested next steps.")

    return Findings


def schema_for(max_chars: int = 400) -> dict[str, Any]:
    return findings_model(max_chars).model_json_schema()


def token_budget(schema: dict[str, Any]) -> int:
    """New tokens that always suffice for a complete object: 4 tokens a character (byte fallback) + syntax."""
    chars = 0
    for prop in schema.get("properties", {}).values():
        chars += int(prop.get("maxLength", 64)) + 16
        chars += max((len(str(v)) for v in prop.get("enum", [])), default=0)
    return 4 * chars + 64


def instruction(language: str) -> str:
    """Appended to the question so the model knows what each field means."""
    if language == "zh":
        return (
            "\n\n请只输出一个 JSON 对象，字段为 findings（所见）、location（部位）、size（大小）、"
            "impression（印象）、confidence（low/moderate/high）、recommendations（建议）。"
        )
    return (
        "\n\nAnswer with one JSON object with the fields findings, location, size, impression, "
        "confidence (low/moderate/high) and recommendations."
    )


def check_schema(schema: Any) -> dict[str, Any]:
    """``schema`` if it is a JSON schema of an object that the grammar compiler accepts, else RequestError.

    Checked before any model work, so a bad schema from a client is a 400 that names the problem, not a
    crash inside the compiler mid-generation.
    """
    import xgrammar as xgr

    fix = 'Send a JSON schema of an object, e.g. {"type": "object", "properties": {...}}.'
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise RequestError('The json_schema must describe a JSON object ("type": "object").', fix)
    try:
        text = json.dumps(schema)
        xgr.Grammar.from_json_schema(text, any_whitespace=False)
    except (RuntimeError, ValueError, TypeError, RecursionError) as exc:
        raise schema_error(exc) from exc
    return schema


def schema_error(exc: BaseException) -> RequestError:
    """The grammar compiler's complaint about a schema, without its source-file prefix."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    problem = re.sub(r"^\[[^]]*\] \S+: ", "", lines[0])
    return RequestError(
        f"The json_schema cannot be used: {problem[:300]}",
        'Send a JSON schema of an object, e.g. {"type": "object", "properties": {...}}.',
    )


class GrammarCache:
    """Compiles each schema once per tokenizer (compilation takes milliseconds to seconds)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: list[int]) -> None:
        import xgrammar as xgr

        self.stop_ids = list(stop_ids)
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids)
        self._compiler = xgr.GrammarCompiler(info)
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    def logits_processor(self, schema: dict[str, Any]) -> Any:
        import xgrammar as xgr

        key = json.dumps(schema, sort_keys=True)
        with self._lock:
            if key not in self._cache:  # compile the schema as given, so fields keep their order
                try:
                    self._cache[key] = self._compiler.compile_json_schema(
                        json.dumps(schema), any_whitespace=False
                    )
                except (RuntimeError, ValueError, TypeError, RecursionError) as exc:
                    raise schema_error(exc) from exc
            compiled = self._cache[key]
        return xgr.contrib.hf.LogitsProcessor(compiled)  # stateful: a new one per generation


def parse(text: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The generated JSON as a dict, checked against the schema's fields."""
    try:
        # strict=False: the grammar lets raw control characters into strings; they are removed below
        data = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        raise StructuredOutputError(
            f"The structured answer is incomplete JSON ({exc.msg} at character {exc.pos}).",
            "Raise max_new_tokens so the whole object fits.",
        ) from exc
    if schema.get("title") == "Findings":
        try:
            findings_model(10**6).model_validate(data)
        except ValidationError as exc:
            raise StructuredOutputError(
                f"The structured answer misses fields: {exc}", "Report this bug."
            ) from exc
    return {k: _CONTROL.sub(" ", v).strip() if isinstance(v, str) else v for k, v in data.items()}
