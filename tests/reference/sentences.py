"""The sentences and configs the packaged reference vectors are computed for."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("TPEMBED_DATA", REPO_ROOT.parent / "shared" / "senteval"))
# the last commit before the levers became plug-ins: its vectors are the reference
REFERENCE_COMMIT = "24685f5cadbe507a843abdfe4f21f984959d7ac0"
# torch's intra-op threads when the reference was written (a 2-core machine): another count sums in
# another order (~3e-6 relative), so the comparison runs with this many
REFERENCE_THREADS = 2


def reference_sentences(n_pairs: int = 32) -> list[str]:
    """The first ``n_pairs`` STS-B dev pairs, both sides: 64 sentences."""
    from tpembed.evaluation.data import load_task

    data = load_task("STSBenchmark-dev", DATA_DIR, limit=n_pairs)
    return data.sentences()


def packaged_settings() -> dict[str, dict]:
    """Each packaged config's settings that differ from EncoderConfig's defaults (model, device, dtype
    always), as JSON-ready dicts: what another source tree can rebuild it from."""
    return {
        name: {**config.model_dump(exclude_defaults=True), "model": config.model, "device": "cpu", "dtype": "float32"}
        for name, config in packaged_configs().items()
    }


def packaged_configs() -> dict:
    """Every named config shipped with tpembed whose model is a packaged one, device cpu, fp32."""
    from tpembed.config import default_config_path, load_config_file
    from tpembed.models import PACKAGED_MODELS

    entries = load_config_file(default_config_path()).models
    return {
        name: entry.encoder_config().model_copy(update={"device": "cpu", "dtype": "float32"})
        for name, entry in entries.items()
        if entry.model in PACKAGED_MODELS
    }
