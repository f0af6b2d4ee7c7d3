"""OpenAI's schema: the request of ``POST /v1/embeddings`` and the checks behind its 400s, the
responses of every route and the error body they all share (what ``/openapi.json`` documents)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

TOKEN_IDS_MESSAGE = (
    "input holds token ids; this server embeds text only: ids from another tokenizer would silently mean "
    "other words. Send the text itself (LangChain's OpenAIEmbeddings: check_embedding_ctx_length=False)"
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request. ``user`` is accepted and ignored; other unknown keys too (as OpenAI)."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    # the JSON a client may send (the validator below turns a string into a one-item list). An
    # empty string is a text like any other (tpembed's one rule: the prompt around an empty
    # sentence, the same vector as Encoder.encode("")); an empty list is refused (400); token ids
    # are not accepted here
    input: Annotated[
        list[str],
        WithJsonSchema({
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ],
            "title": "Input",
            "description": "The text to embed: a string, or a list of strings (one vector each); an empty "
            "string is embedded as the prompt around an empty sentence.",
        }),
    ]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> list[str]:
        """A string or a non-empty list of strings (empty strings included); token ids get their own message."""
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ValueError(f"input must be a string or a list of strings, got {type(value).__name__}")
        if not value:
            raise ValueError("input is an empty list; send at least one string")
        if any(_is_int(v) or (isinstance(v, list) and v and all(_is_int(t) for t in v)) for v in value):
            raise ValueError(TOKEN_IDS_MESSAGE)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"input[{i}] must be a string, got {type(item).__name__}")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as err:  # JSON may carry a lone surrogate escape ("\\ud800")
                raise ValueError(f"input[{i}] is not valid Unicode: lone surrogate at character {err.start}") from None
        return value


class ErrorDetail(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorDetail


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of little-endian float32 bytes")


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: Usage


class Model(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    identity: str | None = Field(description="the digest of the config's identity (null: loading, or none)")


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


class Health(BaseModel):
    """``/health`` when every model is ready (200)."""

    status: Literal["ready"]
    models: list[str]


class Unhealthy(BaseModel):
    """``/health`` while loading, after a failed load or once a worker died (503): OpenAI's ``error`` says why."""

    status: Literal["idle", "loading", "failed"]
    models: list[str]
    error: ErrorDetail
