"""Encoder settings, named like the paper's config keys, validated with pydantic."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator


class EncoderConfig(BaseModel):
    """Every setting of an :class:`~tpembed.Encoder`. Unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model: str = Field(
        "smollm2-135m",
        validation_alias=AliasChoices("model", "model_name_or_path"),
        description="packaged name (smollm2-135m, gemma3-270m), .gguf file, HF folder or hub id",
    )
    prompt_method: Literal["prompteol", "metaeol", "cot", "ke"] = Field(
        "prompteol", description="prompt method; ignored when template is given"
    )
    template: str | None = Field(
        None, description='custom prompt with {sentence} and, for TP, {placeholder} (renders as "<PST> ")'
    )
    use_which_plan: Literal["tp", "vanilla"] = Field("tp", description="tp = Token Prepending on")
    tp_starting_index: int = Field(1, ge=0, description="first decoder layer (0-based) whose input gets the TP copy")
    tp_exiting_index: int = Field(7, ge=0, description="TP runs before layers [start, exit)")
    output_layer: int = Field(-1, description="HF hidden_states index: 0 = embeddings, L = final normed, -1 = L")
    pst_init: Literal["gaussian", "zeros"] = Field("gaussian", description="initial <PST> input embedding")
    seed: int = Field(0, description="seed of the <PST> embedding")
    device: str = Field("auto", description="auto (cuda if present, else cpu), cpu, cuda, cuda:1 ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="auto: bf16 on cuda, fp32 on cpu")
    max_length: int | None = Field(
        None, gt=0, description="max prompt tokens; the sentence is shortened, never the prompt (None: model limit)"
    )
    batch_size: int = Field(16, gt=0, description="sentences per forward pass")

    @model_validator(mode="after")
    def _check_tp_range(self) -> EncoderConfig:
        if self.use_which_plan == "tp" and self.tp_exiting_index < self.tp_starting_index:
            raise ValueError(
                f"tp_exiting_index ({self.tp_exiting_index}) must be >= tp_starting_index "
                f"({self.tp_starting_index}); TP runs before layers [start, exit)"
            )
        return self

