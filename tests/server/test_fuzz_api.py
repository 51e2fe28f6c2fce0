"""Property-based fuzzing of the API's request parsing: malformed bodies get 4xx, never a crash."""

from __future__ import annotations

import os
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medvlab.server.app import create_app
from medvlab.services import Lab

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
part = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["text", "image_url", "video", 3]),
        "text": st.text(max_size=30),
        "image_url": json_values,
    }
)
message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "tool", ""]),
        "content": st.one_of(st.text(max_size=30), st.lists(part, max_size=3), json_values),
    }
)
schema_values = st.recursive(
    st.sampled_from(["object", "string", "integer", 12, None, "nope", "#/x"]),
    lambda children: st.dictionaries(
        st.sampled_from(["type", "properties", "items", "$ref", "required", "enum", "maxLength"]),
        children,
        max_size=4,
    ),
    max_leaves=10,
)
"""JSON-schema-like values: the probe crashed the grammar compiler with {"type": 12}."""
response_formats = st.fixed_dictionaries(
    {"type": st.sampled_from(["json_schema", "json_object", "text"])},
    optional={"json_schema": st.fixed_dictionaries({}, optional={"schema": schema_values})},
)
body = st.fixed_dictionaries(
    {"model": st.sampled_from(["tiny", "medvlab", "nope", 7]), "messages": st.lists(message, max_size=3)},
    optional={
        "stream": st.booleans(),
        "max_tokens": st.integers(-5, 8),
        "temperature": json_values | st.sampled_from([1e-300, 1e-6, 1e-5, 2.0, 0.0]),
        "seed": st.integers(-(2**90), 2**90),
        "window": json_values,
        "max_slices": json_values,
        "response_format": json_values | response_formats,
        "kb": json_values,
    },
)


def test_chat_completions_never_500(lab: Lab) -> None:
    with TestClient(create_app(lab, ui=False, preload=False), raise_server_exceptions=False) as tc:

        @settings(
            max_examples=int(os.environ.get("MEDVLAB_FUZZ_EXAMPLES", "80")),
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(st.one_of(body, json_values))
        def check(payload: Any) -> None:
            if (
                isinstance(payload, dict)
                and isinstance(payload.get("max_tokens"), int)
                and payload["max_tokens"] > 0
            ):
                payload["max_tokens"] = min(payload["max_tokens"], 4)
            r = tc.post("/v1/chat/completions", json=payload)
            assert r.status_code < 500, (payload, r.text)
            if r.status_code >= 400:
                assert "error" in r.json()

        check()
        assert tc.get("/healthz").status_code == 200
