"""Request/response bodies of the OpenAI-compatible API (the subset medvlab serves, plus a few extensions)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ImageURL(BaseModel):
    url: str
    detail: str | None = None


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart | ImagePart] | None = None


class ChatCompletionRequest(BaseModel):
    """OpenAI ``/v1/chat/completions`` body; medvlab's extensions go in the openai client's ``extra_body``."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=32768)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    # medvlab extensions
    window: str | None = None
    """Window preset / ``C,W`` / ``medgemma`` / ``auto`` for the images of this request."""
    max_slices: int | None = Field(default=None, ge=1, le=512)
    """Most slices of a volume sent to the model."""
    language: Literal["en", "zh"] | None = None
    """Answer language (default: the question's)."""


class ErrorBody(BaseModel):
    message: str
    type: str
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
