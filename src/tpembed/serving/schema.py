"""The request of ``POST /v1/embeddings`` (OpenAI's schema) and the checks behind its 400s."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

TOKEN_IDS_MESSAGE = (
    "input holds token ids; this server embeds text only: ids from another tokenizer would silently mean "
    "other words. Send the text itself (LangChain's OpenAIEmbeddings: check_embedding_ctx_length=False)"
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request. ``user`` is accepted and ignored; other unknown keys too (as OpenAI)."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    input: list[str]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> list[str]:
        """A string or a non-empty list of non-empty strings; token ids get their own message."""
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
            if not item:
                raise ValueError(f"input[{i}] is an empty string; every input needs some text")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as err:  # JSON may carry a lone surrogate escape ("\\ud800")
                raise ValueError(f"input[{i}] is not valid Unicode: lone surrogate at character {err.start}") from None
        return value
