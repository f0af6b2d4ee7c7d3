"""Encoder settings, named like the paper's config keys, validated with pydantic: the one registry.

Every field of :class:`EncoderConfig` declares, beside its type and description, whether it
changes the vectors (then it is part of :func:`tpembed.identity.identity`, which keys the embedding
cache, corpus resume, MTEB results, saved sentence-transformers models and ``/v1/models``) and
whether ``tpembed search`` may vary it. :func:`resolve_config` is the one way to name settings:
a named config, a YAML file, an EncoderConfig or nothing (the packaged default), plus overrides.
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Literal, Union

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PromptName = Literal["prompteol", "metaeol", "cot", "ke"]


def setting(default: Any, *, vectors: bool, search: bool = False, description: str, **field_kwargs: Any) -> Any:
    """A field of :class:`EncoderConfig`: ``vectors`` says whether another value can change an
    embedding (so it belongs to the identity), ``search`` whether ``tpembed search`` may vary it."""
    return Field(
        default,
        description=description,
        json_schema_extra={"changes_vectors": vectors, "searchable": search},
        **field_kwargs,
    )


class EncoderConfig(BaseModel):
    """Every setting of an :class:`~tpembed.Encoder`. Unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model: str = setting(
        "smollm2-135m",
        validation_alias=AliasChoices("model", "model_name_or_path"),
        vectors=True, description="packaged name (smollm2-135m, gemma3-270m), .gguf file, HF folder or hub id",
    )
    prompt_method: PromptName | list[PromptName] = setting(
        "prompteol",
        vectors=True, search=True, description="prompt method, or an ensemble: a list (cot,ke) whose L2-normalised embeddings are "
        "averaged; ignored when template is given",
    )
    template: str | None = setting(
        None, vectors=True, description='custom prompt with {sentence} and, for TP, {placeholder} (renders as "<PST> ")'
    )
    use_which_plan: Literal["tp", "vanilla"] = setting("tp", vectors=True, search=True, description="tp = Token Prepending on")
    tp_starting_index: int = setting(1, ge=0, vectors=True, search=True, description="first decoder layer (0-based) whose input gets the TP copy")
    tp_exiting_index: int = setting(7, ge=0, vectors=True, search=True, description="TP runs before layers [start, exit)")
    output_layer: int | list[int] = setting(
        -1,
        vectors=True, search=True, description="HF hidden_states index: 0 = embeddings, L = final normed, -1 = L; a list (27,28) "
        "averages the last-token states of those layers",
    )
    pst_init: Literal["gaussian", "zeros"] = setting("gaussian", vectors=True, description="initial <PST> input embedding")
    seed: int = setting(0, vectors=True, description="seed of the <PST> embedding")
    device: str = setting("auto", vectors=False, description="auto (cuda if present, else cpu), cpu, cuda, cuda:1 ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = setting("auto", vectors=True, description="auto: bf16 on cuda, fp32 on cpu")
    max_length: int | None = setting(
        None, gt=0, vectors=True, description="max prompt tokens; the sentence is shortened, never the prompt (None: model limit)"
    )
    batch_size: int = setting(16, gt=0, vectors=False, description="sentences per forward pass")
    max_batch_tokens: int | None = setting(
        None,
        gt=0,
        vectors=False, description="cap rows x padded prompt length per forward pass (batch_size still caps rows; None: rows only)",
    )
    prefix_cache: bool = setting(
        True, vectors=False, description="compute each template's shared prompt prefix once and reuse its keys/values "
        "(kept across calls while the model's weights are unchanged)"
    )
    demonstration: str | list[str] | None = setting(
        None,
        vectors=True, search=True, description="demonstration before every prompt: a built-in name (tpembed configs --demos lists "
        "them) or 'SENTENCE => WORD'; several in order (k-shot): a list, or names joined by + (storm+jockey) (None: off)",
    )
    demo_ensemble: list[str | list[str]] | None = setting(
        None,
        vectors=True, search=True, description="demonstration ensemble: the mean of the L2-normalised embeddings under each "
        "member (each one demonstration, or a k-shot list / names joined by +); 'storm,jockey+chef' on the CLI. "
        "Excludes demonstration (None: off)",
    )
    embed_filter: float | None = setting(
        None,
        gt=1,
        vectors=True, search=True, description="EmbedFilter (arXiv 2606.07502): project the embedding onto the middle "
        "hidden_size / embed_filter right-singular directions of the unembedding matrix (lm_head), dropping both "
        "edges of its spectrum; 1.2 keeps 83% (None: off)",
    )
    pooling: Literal["last_token", "attention_sum", "mean"] = setting(
        "last_token",
        vectors=True, search=True, description="last_token: hidden_states[output_layer] at the last token; attention_sum: the sum of the "
        "last token's attention outputs over decoder layers 0..output_layer-1; mean: the mean of the sentence tokens' "
        "hidden_states[output_layer]",
    )
    cp_layer: int | None = setting(
        None,
        ge=0,
        vectors=True, search=True, description="Contrastive Prompting: decoder layer (0-based) whose attention output projection gets the "
        "last token's input alpha x (v - v_aux) from the 'irrelevant information' prompt (None: off)",
    )
    cp_alpha: float = setting(1.0, vectors=True, search=True, description="Contrastive Prompting's scale alpha")
    cp_mode: Literal["ns", "nr"] = setting(
        "ns", vectors=True, search=True, description="ns: alpha x (v - v_aux); nr: the same with the norm of v kept (norm-preserving)"
    )

    @field_validator("prompt_method", mode="before")
    @classmethod
    def _split_prompt_list(cls, value: Any) -> Any:
        """'cot,ke' or 'cot+ke' (CLI, --set) -> ['cot', 'ke']; a list of one name is that name."""
        if isinstance(value, str) and ("," in value or "+" in value):
            value = [part.strip() for part in value.replace("+", ",").split(",") if part.strip()]
        if isinstance(value, (list, tuple)):
            if not value:
                raise ValueError("a prompt ensemble needs at least one method")
            if len(set(value)) != len(value):
                raise ValueError(f"a prompt ensemble lists each method once, got {list(value)}")
            return value[0] if len(value) == 1 else list(value)
        return value

    @field_validator("demonstration", mode="before")
    @classmethod
    def _check_demonstration(cls, value: Any) -> Any:
        """'storm+jockey' (CLI, --set) -> ['storm', 'jockey']; a list of one is that one; checked now,
        not when the Encoder is built."""
        if value is None:
            return None
        from .prompts import demonstration_prefix, demonstration_shots

        demonstration_prefix(value)  # a clear error for a malformed one
        shots = demonstration_shots(value)
        return shots[0] if len(shots) == 1 else shots

    @field_validator("demo_ensemble", mode="before")
    @classmethod
    def _split_demo_ensemble(cls, value: Any) -> Any:
        """'storm,jockey+chef' (CLI, --set) -> ['storm', ['jockey', 'chef']]; every member checked."""
        if value is None:
            return None
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)) or len(value) < 2:
            raise ValueError(f"demo_ensemble needs at least two members (one demonstration: use demonstration), got {value!r}")
        members = [cls._check_demonstration(member) for member in value]
        if len({str(m) for m in members}) != len(members):
            raise ValueError(f"demo_ensemble lists each member once, got {value!r}")
        return members

    @field_validator("output_layer", mode="before")
    @classmethod
    def _split_layer_list(cls, value: Any) -> Any:
        """'27,28' (CLI) -> [27, 28]; a list of one layer is that layer."""
        if isinstance(value, str) and "," in value:
            try:
                value = [int(part) for part in value.split(",") if part.strip()]
            except ValueError:
                raise ValueError(f"output_layer must be an int or a comma-separated list of ints, got {value!r}") from None
        if isinstance(value, (list, tuple)):
            if not value:
                raise ValueError("output_layer needs at least one layer")
            return value[0] if len(value) == 1 else list(value)
        return value

    def output_layers(self) -> list[int]:
        """``output_layer`` as a list (one element when it is an int)."""
        return list(self.output_layer) if isinstance(self.output_layer, list) else [self.output_layer]

    def prompt_methods(self) -> list[str]:
        """``prompt_method`` as a list (one element when it is a single method)."""
        return list(self.prompt_method) if isinstance(self.prompt_method, list) else [self.prompt_method]

    def demonstrations(self) -> list[str | list[str] | None]:
        """The demonstration of each member of a demonstration ensemble ([demonstration] without one)."""
        return list(self.demo_ensemble) if self.demo_ensemble is not None else [self.demonstration]

    @model_validator(mode="after")
    def _check_demo_settings(self) -> EncoderConfig:
        if self.demo_ensemble is not None and self.demonstration is not None:
            raise ValueError("give demonstration or demo_ensemble, not both (an ensemble member may be k-shot)")
        return self

    @model_validator(mode="after")
    def _check_tp_range(self) -> EncoderConfig:
        if self.use_which_plan == "tp" and self.tp_exiting_index < self.tp_starting_index:
            raise ValueError(
                f"tp_exiting_index ({self.tp_exiting_index}) must be >= tp_starting_index "
                f"({self.tp_starting_index}); TP runs before layers [start, exit)"
            )
        return self


class RunConfig(EncoderConfig):
    """One named entry of a config file: encoder settings plus what to evaluate."""

    mode: Literal["dev", "test", "fasttest"] = Field("test", description="dev: STS-B dev / 5 folds; fasttest: 5 folds")
    task_set: Literal["sts", "transfer", "full", "stsb"] = Field("sts", description="which SentEval tasks")

    def encoder_config(self) -> EncoderConfig:
        """The encoder settings alone (without what to evaluate)."""
        return EncoderConfig(**self.model_dump(include=set(EncoderConfig.model_fields)))


class GpuConfig(BaseModel):
    """The paper's gpu_config block (CUDA_VISIBLE_DEVICES is set from it before loading)."""

    model_config = ConfigDict(extra="forbid")
    cuda_visible_devices: str | None = None


class ConfigFile(BaseModel):
    """A YAML file of named configurations, in the shape of the paper's config.yaml."""

    model_config = ConfigDict(extra="forbid")
    default_config: str | None = None
    gpu_config: GpuConfig | None = None
    models: dict[str, RunConfig]

    @model_validator(mode="after")
    def _check_default(self) -> ConfigFile:
        if self.default_config is not None and self.default_config not in self.models:
            raise ValueError(f"default_config {self.default_config!r} is not one of the models: {sorted(self.models)}")
        return self


_EXPECTED = {
    "int_parsing": "an int", "int_type": "an int", "int_from_float": "an int",
    "float_parsing": "a number", "float_type": "a number",
    "bool_parsing": "true or false", "bool_type": "true or false",
    "string_type": "text", "list_type": "a list", "dict_type": "a mapping", "model_type": "a mapping",
}


def allowed_keys(model: type[BaseModel] | None = None) -> list[str]:
    """The keys a mapping for ``model`` may hold (an entry of a config file: RunConfig's, with
    ``model_name_or_path`` for ``model``)."""
    model = model or RunConfig
    keys = list(model.model_fields)
    return ["model_name_or_path", *keys] if "model" in keys else keys


def closest_key(key: object, allowed: list[str]) -> str | None:
    """The allowed key nearest to a misspelt one (difflib), or None when none is close."""
    import difflib

    spelled = str(key).strip().lower().replace("-", "_")
    if spelled in allowed:
        return spelled
    found = difflib.get_close_matches(spelled, allowed, n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_key_message(key: object, allowed: list[str], *, what: str = "key") -> str:
    """``unknown key 'outputlayer' (did you mean 'output_layer'?)``, else the allowed keys."""
    match = closest_key(key, allowed)
    hint = f"did you mean {match!r}?" if match else f"allowed: {', '.join(allowed)}"
    return f"unknown {what} {str(key)!r} ({hint})"


def _model_at(loc: tuple[Any, ...], root: type[BaseModel]) -> tuple[type[BaseModel], tuple[Any, ...], str]:
    """Walk a pydantic error location from ``root``: (the model the last key belongs to, the rest, a prefix)."""
    model, prefix = root, ""
    loc = tuple(loc)
    while loc and model is ConfigFile and loc[0] in ("models", "gpu_config"):
        if loc[0] == "gpu_config":
            return GpuConfig, loc[1:], "gpu_config: "
        if len(loc) < 2:
            break
        model, prefix, loc = RunConfig, f"entry {loc[1]!r}: ", loc[2:]
    return model, loc, prefix


def explain_errors(err: ValidationError, root: type[BaseModel] | None = None) -> str:
    """A pydantic ValidationError as one line: each bad key with its value and what it must be, an
    unknown key with the closest valid one; no pydantic wording, no URL."""
    if root is None:
        models = {m.__name__: m for m in (RunConfig, EncoderConfig, ConfigFile, GpuConfig)}
        root = models.get(err.title, RunConfig)
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for item in err.errors(include_url=False):
        model, loc, prefix = _model_at(item["loc"], root)
        key = loc[0] if loc else None
        groups.setdefault((prefix, key, model), []).append(item)  # type: ignore[arg-type]
    problems = []
    for (prefix, key, model), items in groups.items():  # type: ignore[misc]
        if key is None:  # a check across keys (a model validator): its own message
            problems += [prefix + _plain(i) for i in items]
            continue
        if any(i["type"] == "extra_forbidden" for i in items):
            problems.append(prefix + unknown_key_message(key, allowed_keys(model)))
            continue
        own = [i for i in items if i["type"] in ("value_error", "assertion_error")]
        if own:
            problems += [f"{prefix}{key}: {_plain(i)}" for i in own]
            continue
        expected = list(dict.fromkeys(_expected(i) for i in items))
        # the deepest location names the bad value itself (an item of a list), else the key's value
        value = max(items, key=lambda i: len(i["loc"])).get("input")
        problems.append(f"{prefix}{key}={value!r} is not valid: must be {' or '.join(expected)}")
    return "; ".join(problems).replace("\n", " ")


def _plain(item: dict[str, Any]) -> str:
    msg = str(item["msg"])
    for lead in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(lead)
    return msg


def _expected(item: dict[str, Any]) -> str:
    if item["type"] in _EXPECTED:
        return _EXPECTED[item["type"]]
    if item["type"] == "literal_error":
        return str((item.get("ctx") or {}).get("expected", item["msg"]))
    return str(item["msg"]).removeprefix("Input should be ")


def _explain(err: ValidationError, where: str, root: type[BaseModel] | None = None) -> ValueError:
    """A pydantic error as a one-line ValueError: what is wrong (see :func:`explain_errors`) and where."""
    return ValueError(f"{explain_errors(err, root)} ({where})")


def load_config_file(path: str | os.PathLike[str]) -> ConfigFile:
    """Read and validate a YAML config file; every problem is a ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{path} is not valid YAML ({problem}{where}): fix it or name another file") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a mapping with a 'models:' section")
    try:
        return ConfigFile.model_validate(raw)
    except ValidationError as err:
        raise _explain(err, f"in {path}", ConfigFile) from None


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict, values parsed as YAML scalars (so 7 is an int, null is None)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def resolve_run_config(
    path: str | os.PathLike[str], name: str | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """The named entry of a config file (default_config when no name), with overrides applied."""
    config_file = load_config_file(path)
    name = name or config_file.default_config
    if name is None:
        raise ValueError(f"no config name given and {path} has no default_config; choose one of {sorted(config_file.models)}")
    if name not in config_file.models:
        where = "the named configs shipped with tpembed" if Path(path) == default_config_path() else str(path)
        raise ValueError(
            f"config {name!r} not found in {where}; available: {', '.join(sorted(config_file.models))}"
            + ("" if where == str(path) else " (or give a YAML file)")
        )
    base = config_file.models[name]
    label = f"config {name!r}" if Path(path) == default_config_path() else f"{path} [{name}]"
    return _with_overrides(base, dict(overrides), label) if overrides else base


def default_config_path() -> Path:
    """The named configs shipped inside the package (``tpembed/configs/config.yaml``).

    The same file in a source checkout, an editable install and a wheel; ``configs/config.yaml``
    at the checkout's root is a link to it (for the paper's ``bash run.sh NAME``).
    """
    return Path(__file__).resolve().parent / "configs" / "config.yaml"


def describe_entry(config: RunConfig) -> dict[str, str]:
    """One line of ``tpembed configs``: model, plan, layers (TP range and output layer), prompt, task."""
    if config.use_which_plan == "tp":
        layers = f"TP [{config.tp_starting_index}, {config.tp_exiting_index}), output {config.output_layer}"
    else:
        layers = f"output {config.output_layer}"
    if config.cp_layer is not None:
        layers += f", CP {config.cp_mode} at {config.cp_layer} x {config.cp_alpha}"
    prompt = "custom template" if config.template else "+".join(config.prompt_methods())
    if config.demonstration or config.demo_ensemble:
        prompt += f" ({describe_demonstrations(config)})"
    if config.embed_filter is not None:
        layers += f", EmbedFilter 1/{config.embed_filter:g}"
    if config.pooling != "last_token":
        layers += f", {config.pooling}"
    return {
        "model": config.model,
        "plan": config.use_which_plan,
        "layers": layers,
        "prompt": prompt,
        "task": f"{config.task_set} ({config.mode})",
    }


def describe_demonstrations(config: EncoderConfig) -> str:
    """``1-shot storm``, ``2-shot storm+jockey``, ``ensemble of 3: storm | jockey+chef | ...`` ('' without)."""
    from .prompts import demonstration_shots, demonstration_text

    if config.demo_ensemble is not None:
        members = " | ".join(map(demonstration_text, config.demo_ensemble))
        return f"demonstration ensemble of {len(config.demo_ensemble)}: {members}"
    if config.demonstration is None:
        return ""
    return f"{len(demonstration_shots(config.demonstration))}-shot: {demonstration_text(config.demonstration)}"


def entry_document(config_file: ConfigFile, name: str) -> dict[str, Any]:
    """A config file holding only entry ``name`` (every key spelled out, as default_config).

    ``tpembed configs --show NAME`` prints it: save it, edit it, ``tpembed run --config FILE``.
    """
    if name not in config_file.models:
        raise ValueError(f"config {name!r} not found; available: {', '.join(sorted(config_file.models))}")
    entry = config_file.models[name].model_dump()
    entry = {"model_name_or_path": entry.pop("model"), **entry}
    return {"default_config": name, "models": {name: entry}}


# --------------------------------------------------------------------------- the registry's flags


def _flag(name: str, flag: str) -> bool:
    extra = EncoderConfig.model_fields[name].json_schema_extra
    if not isinstance(extra, dict) or flag not in extra:
        raise TypeError(f"EncoderConfig.{name} is not declared with setting(...): say whether it changes vectors")
    return bool(extra[flag])


def vector_settings() -> tuple[str, ...]:
    """The EncoderConfig fields whose value can change an embedding (all of them are in the identity)."""
    return tuple(name for name in EncoderConfig.model_fields if _flag(name, "changes_vectors"))


def free_settings() -> tuple[str, ...]:
    """The EncoderConfig fields that never change an embedding (batching, placement, the prefix cache)."""
    return tuple(name for name in EncoderConfig.model_fields if not _flag(name, "changes_vectors"))


def searchable_settings() -> tuple[str, ...]:
    """The EncoderConfig fields ``tpembed search`` may vary."""
    return tuple(name for name in EncoderConfig.model_fields if _flag(name, "searchable"))


# --------------------------------------------------------------------------- one way to name a config

ConfigSource = Union[str, "os.PathLike[str]", EncoderConfig, None]


def default_config_name() -> str:
    """The packaged default config (``default_config`` of the shipped file): what every entry point
    uses when nothing is named."""
    name = load_config_file(default_config_path()).default_config
    assert name is not None, "the shipped config file names its default_config"
    return name


def _is_config_file(source: str | os.PathLike[str]) -> bool:
    path = Path(source).expanduser()
    return path.suffix.lower() in (".yaml", ".yml") or path.is_file()


def resolve_config(
    config: ConfigSource = None, overrides: Mapping[str, Any] | None = None, *, name: str | None = None
) -> RunConfig:
    """The one way to name settings, for Python and every CLI command.

    ``config`` is a named config (``tpembed configs`` lists them), a YAML file of named configs
    (``name`` picks the entry, else its ``default_config``), an :class:`EncoderConfig`, or None for
    the packaged default config (:func:`default_config_name`). ``overrides`` (EncoderConfig or
    RunConfig keys) go on top. With None and a ``model`` override, the base is EncoderConfig's own
    defaults (the paper's settings): the default config's layers belong to its own model.
    """
    overrides = dict(overrides or {})
    if isinstance(config, EncoderConfig):
        if name is not None:
            raise ValueError("name picks an entry of a config file; it does not apply to an EncoderConfig")
        base = config if isinstance(config, RunConfig) else RunConfig(**config.model_dump())
        return _with_overrides(base, overrides, "the given EncoderConfig") if overrides else base
    if config is None:
        if name is None and ("model" in overrides or "model_name_or_path" in overrides):
            # a model named without a config: the default config's layers are another model's, so
            # the base is the paper's generic settings (EncoderConfig's defaults)
            return _with_overrides(RunConfig(), overrides, "the default settings")
        return resolve_run_config(default_config_path(), name, overrides)
    if not isinstance(config, (str, os.PathLike)):
        raise ValueError(
            f"config must be a config name, a YAML file or an EncoderConfig, got {type(config).__name__}"
        )
    if _is_config_file(config):
        return resolve_run_config(config, name, overrides)
    if name is not None:
        raise ValueError(f"give a config name ({config!r}) or name={name!r} of a config file, not both")
    return resolve_run_config(default_config_path(), str(config), overrides)


def _with_overrides(base: RunConfig, overrides: dict[str, Any], where: str) -> RunConfig:
    entry = base.model_dump()
    entry.update(_rename_model_key(overrides))
    try:
        return RunConfig.model_validate(entry)
    except ValidationError as err:
        raise _explain(err, f"set on top of {where}") from None


def _rename_model_key(overrides: dict[str, Any]) -> dict[str, Any]:
    """The paper's ``model_name_or_path`` is stored as ``model``."""
    overrides = dict(overrides)
    if "model_name_or_path" in overrides:
        if "model" in overrides:
            raise ValueError("give model_name_or_path or model, not both")
        overrides["model"] = overrides.pop("model_name_or_path")
    return overrides
