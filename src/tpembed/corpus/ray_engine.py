"""The Ray Data engine: the shards are a dataset, ``map_batches`` runs them on a pool of Encoder actors.

Each actor loads the model once and embeds whole shards: it reads the shard's rows from the input
files itself (with the readers of the local engine, so ids, rejects and vectors are the same) and
writes the shard's files atomically. Only shard descriptions and counts travel through Ray, not
texts or vectors. A dead actor is restarted by Ray and its shard retried; a retried shard simply
overwrites its own temporary files, and a finished one is never written twice.

On a cluster the inputs and the output folder must be at the same path on every node (shared
storage), and tpembed installed there.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from ..config import EncoderConfig
from ..integrations._extras import require
from .plan import Shard
from .readers import Columns
from .run import PreparedRun


class ShardEmbedder:
    """A Ray Data callable class: one Encoder per actor, one shard per call."""

    def __init__(self, config: dict[str, Any], out: str, columns: dict[str, Any], keep_text: bool, threads: int) -> None:
        import torch

        from ..encoder import Encoder
        from ..models import load_model

        if threads > 0:
            torch.set_num_threads(threads)
        encoder_config = EncoderConfig(**config)
        self.encoder = Encoder(load_model(encoder_config.model, device=encoder_config.device,
                                          dtype=encoder_config.dtype), config=encoder_config)
        self.identity = json.dumps(self.encoder.loaded.identity, default=str)
        self.out, self.columns, self.keep_text = Path(out), Columns(**columns), keep_text

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        from .work import embed_shard
        from .writer import is_done, shard_counts

        done: dict[str, list[Any]] = {"index": [], "rows": [], "identity": [], "error": [], "errno": []}
        for i in range(len(batch["index"])):
            shard = Shard(**{k: _plain(batch[k][i]) for k in ("index", "path", "start", "stop", "offset")})
            try:
                if not is_done(self.out, shard):  # a retry after the write: keep the written shard
                    embed_shard(self.encoder, self.out, shard, self.columns, keep_text=self.keep_text)
                counts, error = shard_counts(self.out, shard), None
            except OSError as err:
                # returned, not raised: Ray would retry it and hand the driver a traceback without it
                counts, error = {"index": shard.index, "rows": 0}, err
            done["index"].append(counts["index"])
            done["rows"].append(counts["rows"])
            done["identity"].append(self.identity)
            done["error"].append(str(error) if error else "")
            done["errno"].append(error.errno or 0 if error else 0)
        return done


def _plain(value: Any) -> Any:
    """numpy scalars (as Ray Data hands them) to Python ones."""
    return value.item() if hasattr(value, "item") else value


def _check_resources(available: dict[str, float], workers: int, cpus: float, gpus: float, *, strict: bool) -> None:
    """A pool that cannot fit would wait for ever: an error on a cluster started here, else a warning
    (an autoscaling cluster may still grow to fit it)."""
    for kind, each in (("CPU", cpus), ("GPU", gpus)):
        need, have = workers * each, available.get(kind, 0.0)
        if need > have:
            message = (f"{workers} Ray workers x {each:g} {kind}s need {need:g} {kind}s; the cluster has {have:g} "
                       f"(lower --workers or --{kind.lower()}s-per-worker)")
            if strict:
                raise ValueError(message)
            warnings.warn(message, stacklevel=3)


def run_ray(
    run: PreparedRun, config: EncoderConfig, *, workers: int, gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 1.0, address: str | None = None, progress: bool = True,
) -> tuple[list[dict], dict[str, Any]]:
    """Embed the shards not done yet on a Ray actor pool; return every shard's counts and the model identity."""
    from tqdm.auto import tqdm

    ray = require("ray", "ray", "the Ray engine")
    require("ray.data", "ray", "the Ray engine")
    todo = run.todo()
    identity: dict[str, Any] = {}
    if not todo:
        return run.counts(), identity
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), log_to_driver=False,
                 logging_level="ERROR", include_dashboard=False)
    try:
        _check_resources(ray.cluster_resources(), workers, cpus_per_worker, gpus_per_worker, strict=started_here)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # our bar counts rows
        context.print_on_execution_start = False
        dataset = ray.data.from_items([s.to_dict() for s in todo], override_num_blocks=len(todo))
        embedded = dataset.map_batches(
            ShardEmbedder,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker,
            fn_constructor_kwargs={
                "config": config.model_dump(),
                "out": str(run.out.resolve()),
                "columns": {"text": run.columns.text, "id": run.columns.id},
                "keep_text": run.keep_text,
                "threads": max(1, int(cpus_per_worker)),
            },
            # no retry settings here: Ray Data's actor pools restart a lost actor (its process or
            # its whole node) wherever the cluster has room and retry its shards, without end
            # (ActorPoolMapOperator._apply_default_remote_args: max_restarts=-1,
            # max_task_retries=-1; passing them as **ray_remote_args is deprecated in Ray 2.60).
            # tests/corpus/test_ray_cluster.py checks those defaults and loses nodes mid-run. A
            # retried shard is safe: a shard counts only once its file is renamed into place, and
            # a done one is never rewritten.
        )
        with tqdm(total=sum(s.rows for s in todo), desc=f"embedding ({workers} Ray workers)", unit="row",
                  unit_scale=True, disable=not progress, file=sys.stderr, smoothing=0.1) as bar:
            for row in embedded.iter_rows():
                if row["error"]:  # a failed write: the actor's one-line error, as the local engine raises it
                    error = OSError(row["error"])
                    error.errno = int(row["errno"]) or None
                    raise error
                identity = json.loads(row["identity"])
                bar.update(int(row["rows"]))
    finally:
        if started_here:
            ray.shutdown()
    return run.counts(), identity
