"""The local engine: one process, one Encoder, the shards one after the other."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

from ..config import EncoderConfig
from .run import PreparedRun
from .work import embed_shard


def run_local(run: PreparedRun, config: EncoderConfig, *, progress: bool = True) -> tuple[list[dict], dict[str, Any]]:
    """Embed the shards not done yet; return every shard's counts and the model's identity."""
    from ..encoder import Encoder
    from ..models import load_checked

    todo = run.todo()
    if not todo:  # a finished run again: nothing to load
        return run.counts(), {}
    encoder = Encoder(load_checked(config, progress=progress), config=config)
    with tqdm(total=sum(s.rows for s in todo), desc="embedding", unit="row", unit_scale=True, disable=not progress,
              file=sys.stderr, smoothing=0.1) as bar:
        for shard in todo:
            embed_shard(encoder, run.out, shard, run.columns, keep_text=run.keep_text)
            bar.update(shard.rows)
    return run.counts(), dict(encoder.loaded.identity)
