"""Loading decoder-only models (HF dir / hub id, .gguf file, packaged defaults) and finding their layers."""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .embedding_cache import default_cache_dir
from .model_files import (  # noqa: F401  (the files' side, without torch; names kept here for callers)
    PACKAGED_MODELS,
    _converted_target,
    _gguf_file,
    file_sha256,
    gguf_architecture_value,
    gguf_metadata,
    packaged_model_file,
)

if TYPE_CHECKING:
    from .config import EncoderConfig

# Where decoder layers live, as attribute paths from the base model (not model families).
_LAYER_PATHS = (
    "layers",
    "model.layers",
    "language_model.layers",
    "model.language_model.layers",
    "decoder.layers",
    "model.decoder.layers",
    "h",
    "transformer.h",
    "blocks",
    "transformer.blocks",
)


_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The one lock of a model object, shared by everything that runs or changes it.

    Encoders sharing a model install hooks on the same layer modules, write their own ``<PST>``
    row into the same embedding matrix and use the same tokenizer, so each tokenization and each
    forward pass holds this lock. Keyed by the module itself, so two wrappers of one model
    (two :class:`LoadedModel` objects, two Encoders built from one ``PreTrainedModel``) share it.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@dataclass
class LoadedModel:
    """A decoder (without its lm_head), its tokenizer, its layer list and where it came from.

    One LoadedModel may back any number of Encoders, used from any number of threads: every
    tokenization and forward pass holds :attr:`lock`.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    layers: nn.ModuleList
    identity: dict[str, Any] = field(default_factory=dict)
    #: the lm_head's weight (vocab x hidden), kept for EmbedFilter; a tied one costs no memory
    unembedding: torch.Tensor | None = None

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def lock(self) -> threading.RLock:
        """The model's lock (see :func:`model_lock`)."""
        return model_lock(self.model)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; a device this machine lacks is a ValueError."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N ({err})") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={str(device)!r} but CUDA is not available here (torch {torch.__version__}"
                f"{', a CPU-only build' if torch.version.cuda is None else ''}); use device='cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"device={str(device)!r} but this machine has {count} CUDA device(s): cuda:0..cuda:{count - 1}")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={str(device)!r} but MPS is not available here; use device='cpu' or 'auto'")
    elif resolved.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ValueError(f"unsupported device {str(device)!r}; use auto, cpu, cuda or cuda:N")
    return resolved


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """'auto' is bf16 on CUDA (fp16 where bf16 is unsupported) and fp32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto or one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def find_decoder_layers(model: nn.Module) -> nn.ModuleList:
    """Find the list of decoder blocks: known attribute paths first, else the longest ModuleList."""
    for path in _LAYER_PATHS:
        obj: Any = model
        for name in path.split("."):
            obj = getattr(obj, name, None)
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return obj
    candidates = [
        m
        for m in model.modules()
        if isinstance(m, nn.ModuleList) and len(m) > 1 and len({type(c) for c in m}) == 1
    ]
    if not candidates:
        raise ValueError(
            f"cannot find the decoder layers of {type(model).__name__}: no attribute among "
            f"{', '.join(_LAYER_PATHS)} and no list of identical blocks"
        )
    return max(candidates, key=len)


def _check_causal(model: PreTrainedModel, vocab_size: int) -> None:
    """Changing a later token must not change an earlier one's state; else this is no decoder."""
    device = next(model.parameters()).device
    ids = torch.tensor([[1 % vocab_size, 2 % vocab_size], [1 % vocab_size, 3 % vocab_size]], device=device)
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=False).last_hidden_state
    if not torch.allclose(out[0, 0], out[1, 0], rtol=1e-3, atol=1e-4):
        raise ValueError(
            f"{type(model).__name__} is not a causal decoder (its first token sees later tokens); "
            "tpembed needs a decoder-only LLM"
        )


def _base_decoder(model: nn.Module) -> nn.Module:
    """The decoder under an LM head: transformers' ``base_model``. Where that is the head model itself
    (transformers 4.56-4.57 give Gemma3ForCausalLM the multimodal model's prefix, ``language_model``,
    which a text-only model lacks), the decoder is the usual ``.model`` attribute."""
    base = getattr(model, "base_model", model)
    if base is model and isinstance(getattr(model, "model", None), nn.Module):
        base = model.model
    return base


def prepare_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, identity: dict[str, Any] | None = None
) -> LoadedModel:
    """Wrap an in-memory model and tokenizer: keep the base decoder only, find its layers, check it."""
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(f"{config.model_type} is an encoder-decoder model; tpembed needs a decoder-only LLM")
    base = _base_decoder(model)
    layers = find_decoder_layers(base)
    base.eval()
    with model_lock(base):  # an Encoder may be running this model in another thread
        _check_causal(base, base.get_input_embeddings().weight.shape[0])
    info = {"model_type": config.model_type, "num_layers": len(layers), "hidden_size": config.hidden_size}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    unembedding = head.weight if head is not None else None
    return LoadedModel(base, tokenizer, layers, {**info, **(identity or {})}, unembedding)


def _converted_gguf_dir(gguf: Path, cache_dir: Path) -> tuple[Path, str]:
    """Convert a GGUF file to an HF folder once (slow: dequantization), keyed by the file's hash."""
    target, sha, done = _converted_target(gguf, cache_dir)
    if not done:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # The weights are dequantized already; drop the GGUF quantizer so they can be saved.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
        (target / "tpembed-converted.json").write_text(json.dumps({"gguf": str(gguf), "sha256": sha}))
    return target, sha


def _check_hub_id(name: str) -> None:
    """Fail within seconds for a name that is neither packaged, local, cached nor on the hub.

    transformers retries an unreachable hub for about half a minute; one short request tells
    the same. A model already in the local HF cache, or ``HF_HUB_OFFLINE=1``, skips the request.
    """
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    packaged = ", ".join(PACKAGED_MODELS)
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ValueError(
            f"model {name!r} is not a packaged model ({packaged}), not an existing file or folder, "
            "and not a valid hub id (owner/name)"
        ) from None
    if constants.HF_HUB_OFFLINE or isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    url = f"{constants.ENDPOINT}/api/models/{name}"
    token = os.environ.get("HF_TOKEN")
    request = urllib.request.Request(url, method="HEAD", headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as err:
        if err.code in (401, 403, 404):
            raise ValueError(
                f"model {name!r} is not a packaged model ({packaged}) nor a local path, and the hub "
                f"answers {err.code} for it (no such repository, or a gated/private one: set HF_TOKEN)"
            ) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ValueError(
            f"model {name!r} is not a packaged model ({packaged}) nor a local path, and the hub "
            f"({constants.ENDPOINT}) cannot be reached to download it: {reason}. Pass a local folder "
            "or .gguf file, or download the model first"
        ) from None


def _resolve_source(name: str, cache: Path) -> tuple[Path | str, dict[str, Any]]:
    """Where an HF model folder (or hub id) for ``name`` lives, converting a GGUF file once."""
    identity: dict[str, Any] = {"name": name}
    if name in PACKAGED_MODELS:
        source = packaged_model_file(name, cache)
    else:
        source = Path(name).expanduser()
        if not source.exists() and (source.suffix == ".gguf" or name.startswith((".", "/", "~"))):
            raise FileNotFoundError(f"model path {name!r} does not exist")
    if isinstance(source, Path) and source.suffix == ".gguf":
        path, sha = _converted_gguf_dir(source, cache)
        identity.update(source=str(source), sha256=sha)
        return path, identity
    if not source.exists():
        _check_hub_id(name)
    path = source if source.exists() else name
    identity["source"] = str(path)
    return path, identity


def load_causal_lm(
    model: str | os.PathLike[str],
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The full causal LM (lm_head included) and its tokenizer, in eval mode.

    Same names as :func:`load_model`; for reference runs (e.g. the paper's
    ``output_hidden_states=True`` forward in benchmarks/speed.py), not for embedding.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path, _ = _resolve_source(str(model), cache)
    torch_device = resolve_device(device)
    causal_lm = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype, torch_device))
    return causal_lm.to(torch_device).eval(), AutoTokenizer.from_pretrained(path)


def load_model(
    model: str | os.PathLike[str],
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> LoadedModel:
    """Load a decoder-only LLM for embedding.

    ``model`` is a packaged default (``smollm2-135m``, ``gemma3-270m``), a ``.gguf`` file, a local
    HF model folder or a hub id. The lm_head is never used; only the base decoder is kept.
    Loading is quiet: transformers' and huggingface_hub's own bars ("Loading weights", downloads)
    show only with ``progress=True``; their warnings always show.
    """
    if not progress:
        from .progress import quiet_libraries

        with quiet_libraries():
            return _load_model(model, device=device, dtype=dtype, cache_dir=cache_dir)
    return _load_model(model, device=device, dtype=dtype, cache_dir=cache_dir)


def _load_model(
    model: str | os.PathLike[str],
    *,
    device: str | torch.device,
    dtype: str | torch.dtype,
    cache_dir: str | os.PathLike[str] | None,
) -> LoadedModel:
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = str(model)
    torch_device = resolve_device(device)  # before anything slow: a missing GPU is known at once
    torch_dtype = resolve_dtype(dtype, torch_device)
    path, identity = _resolve_source(name, cache)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot load a model config from {name!r}: {err}") from err
    identity["revision"] = getattr(config, "_commit_hash", None)
    try:
        causal_lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except ValueError as err:
        raise ValueError(f"{name!r} ({config.model_type}) is not a decoder-only causal LM: {err}") from err
    tokenizer = AutoTokenizer.from_pretrained(path)
    identity.update(device=str(torch_device), dtype=str(torch_dtype).removeprefix("torch."))
    return prepare_model(causal_lm.to(torch_device), tokenizer, identity)


# ---- before and around loading: the layer count from the config alone, one bar per phase ----


@dataclass(frozen=True)
class ModelConfigFacts:
    """What the model's config says without its weights: layers, position limit, identity."""

    num_layers: int | None  # None when the config does not say
    max_positions: int | None
    model_id: str  # what a loaded model's identity keys on: the GGUF file's SHA-256, else source@revision


def read_model_config(model: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None) -> ModelConfigFacts:
    """Read the model's config alone: no weights are loaded.

    A packaged name or ``.gguf`` file: the converted folder's ``config.json`` when it exists, else
    the GGUF metadata (``<architecture>.block_count`` / ``.context_length``). An HF folder or hub id:
    its config (``AutoConfig``; for multimodal configs the text model's).
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = str(model)
    gguf_file = _gguf_file(name, cache)
    source: Path | str = name
    if gguf_file is not None:
        target, sha, done = _converted_target(gguf_file, cache)
        if not done:
            metadata = gguf_metadata(gguf_file)
            return ModelConfigFacts(
                gguf_architecture_value(metadata, "block_count"), gguf_architecture_value(metadata, "context_length"), sha
            )
        source = target
    elif Path(name).expanduser().exists():
        source = Path(name).expanduser()
    else:
        _check_hub_id(name)  # an unknown or unreachable hub id fails in seconds, as in load_model
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot load a model config from {name!r}: {err}") from err
    layers = getattr(config.get_text_config(), "num_hidden_layers", None)
    positions = getattr(config, "max_position_embeddings", None)
    model_id = sha if gguf_file is not None else f"{source}@{getattr(config, '_commit_hash', None)}"
    return ModelConfigFacts(
        layers if isinstance(layers, int) else None, positions if isinstance(positions, int) else None, model_id
    )


def model_num_layers(model: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None) -> int | None:
    """The model's number of decoder layers from its config alone (None when the config does not say)."""
    return read_model_config(model, cache_dir=cache_dir).num_layers


def loaded_model_id(identity: dict[str, Any]) -> str | None:
    """The key a loaded model's identity gives (see :func:`read_model_config`); None for an in-memory
    model with no file hash or source."""
    if identity.get("sha256"):
        return str(identity["sha256"])
    return f"{identity['source']}@{identity.get('revision')}" if identity.get("source") else None


def load_model_with_progress(
    model: str | os.PathLike[str],
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> LoadedModel:
    """:func:`load_model` with one progress bar per phase instead of the libraries' own bars.

    Phases: converting a GGUF file (first time only), then loading. ``progress=False`` shows nothing.
    """
    import contextlib
    import io
    import sys

    from tqdm.auto import tqdm

    from .progress import quiet_libraries

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = str(model)
    with quiet_libraries():
        gguf_file = _gguf_file(name, cache)
        if gguf_file is not None and not _converted_target(gguf_file, cache)[2]:
            with tqdm(total=1, desc=f"converting {gguf_file.name} (once)", unit="model", disable=not progress,
                      file=sys.stderr) as bar, contextlib.redirect_stderr(io.StringIO()):
                # transformers prints its de-quantizing bar straight through tqdm; it goes to the void
                _converted_gguf_dir(gguf_file, cache)
                bar.update(1)
        with tqdm(total=1, desc=f"loading {name}", unit="model", disable=not progress, file=sys.stderr) as bar:
            loaded = load_model(model, device=device, dtype=dtype, cache_dir=cache)
            bar.update(1)
    return loaded


def check_before_loading(config: EncoderConfig) -> None:
    """The device and layer settings against the model's config, read without its weights (seconds)."""
    from .levers import check_layers

    resolve_device(config.device)
    num_layers = model_num_layers(config.model)
    if num_layers is not None:
        check_layers(config, num_layers)


def load_checked(config: EncoderConfig, *, progress: bool = True) -> LoadedModel:
    """Load ``config.model`` (one bar per phase) once its layer settings fit the model's config.

    The config is read without weights, so a bad layer index (or device) fails in seconds, not after the load.
    """
    check_before_loading(config)
    return load_model_with_progress(config.model, device=config.device, dtype=config.dtype, progress=progress)
