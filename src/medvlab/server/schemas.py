"""Request/response bodies of the OpenAI-compatible API (the subset medvlab serves, plus a few extensions)."""

from __future__ import annotations

from typing import Any, Literal

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


class JsonSchemaSpec(BaseModel):
    name: str = "findings"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


class ResponseFormat(BaseModel):
    """OpenAI ``response_format``: ``json_object`` / ``json_schema`` enforce JSON while decoding."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchemaSpec | None = None


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
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    """Sampling seed (the range torch.manual_seed takes)."""
    min_tokens: int = Field(default=0, ge=0, le=32768)
    """Generate at least this many tokens (as vLLM's extension of the OpenAI API)."""
    # medvlab extensions
    window: str | None = None
    """Window preset / ``C,W`` / ``medgemma`` / ``auto`` for the images of this request."""
    max_slices: int | None = Field(default=None, ge=1, le=512)
    """Most slices of a volume sent to the model."""
    language: Literal["en", "zh"] | None = None
    """Answer language (default: the question's)."""
    response_format: ResponseFormat | None = None
    """``json_object`` uses medvlab's findings schema; ``json_schema`` with a ``schema`` uses that one."""
    kb: int = Field(default=0, ge=0, le=20)
    """Ground the answer in this many knowledge-base snippets (0: none)."""
    segment: bool = False
    """Segment the first 3-D image and give the measured volumes to the model (listed after the answer)."""


class ImageRequest(BaseModel):
    """An image (data URI, or an allowed local path) and how to show it to the model."""

    model_config = ConfigDict(extra="forbid")

    image: str
    question: str = Field(min_length=1)
    window: str | None = None
    max_slices: int | None = Field(default=None, ge=1, le=512)
    language: Literal["en", "zh"] | None = None
    max_new_tokens: int | None = Field(default=None, ge=1, le=32768)


class ExplainRequest(ImageRequest):
    answer: str = Field(min_length=1)
    """The answer to explain (as returned by /v1/chat/completions, disclaimer included or not)."""
    span: tuple[int, int] | None = None
    """Character range of ``answer`` to explain; default: all of it."""


class SegmentRequest(BaseModel):
    """Segment a volume (data URI, allowed local path or URL) with a checkpoint or built-in model."""

    image: str
    model: str | None = None
    format: Literal["json", "nifti", "dicom-seg", "dicom-sr"] = "json"
    """``dicom-seg``: a DICOM SEG referencing the source (a DICOM file or an allowed series folder);
    ``dicom-sr``: the TID 1500 measurement SR of the volumes, referencing that SEG."""


class ReportRequest(ImageRequest):
    answer: str | None = None
    """An answer already given; generated when omitted."""
    structured: bool = False
    heatmap: bool = False
    kb: int = Field(default=0, ge=0, le=20)
    format: Literal["pdf", "dicom", "dicom-sr"] = "pdf"
    """``dicom``: the PDF as a DICOM Encapsulated PDF; ``dicom-sr``: the answer as a DICOM text SR."""
    segment: bool = False
    """Segment the volume first: the answer cites the measured volumes and the PDF lists them."""


class FeedbackRequest(BaseModel):
    """A clinician's rating of an answer, optionally with a better answer (becomes DPO data)."""

    image: str
    """The image the answer was about: a data URI (or an allowed local path)."""
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    rating: Literal[1, -1]
    better_answer: str | None = None
    window: str | None = None
    max_slices: int | None = Field(default=None, ge=1, le=512)


class AdapterRequest(BaseModel):
    path: str = Field(min_length=1, max_length=4096)
    """Adapter folder on the server, inside MEDVLAB_ALLOWED_PATHS."""
    name: str | None = Field(default=None, min_length=1, max_length=64)
    """Serve it under this name beside the others (a request's ``model`` picks it); without a name it
    becomes the active adapter instead."""


class Snippet(BaseModel):
    title: str = Field(min_length=1, max_length=512)
    text: str = Field(min_length=1)
    source: str = ""


class SnippetsRequest(BaseModel):
    snippets: list[Snippet] = Field(min_length=1)


class ErrorBody(BaseModel):
    message: str
    type: str
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
