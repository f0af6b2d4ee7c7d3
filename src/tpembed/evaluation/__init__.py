"""SentEval-style evaluation of any ``encode_fn: list[str] -> np.ndarray (n, d)``.

Independent of the encoder: nothing here imports torch. Names are imported on first use, so finding
or fetching the data (``download``, ``data``) does not wait for scipy and scikit-learn to load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

# public name -> submodule that defines it
_EXPORTS = {
    **dict.fromkeys(
        ["STS_TASKS", "TASKS", "TRANSFER_TASKS", "STSData", "TaskSpec", "TransferData", "check_data_dir",
         "load_task", "resolve_data_dir", "tasks_for"],
        ".data",
    ),
    **dict.fromkeys(
        ["SENTEVAL_URL", "DownloadError", "cached_senteval_dir", "download_senteval", "ensure_senteval",
         "find_data_root", "locate_senteval", "senteval_url"],
        ".download",
    ),
    **dict.fromkeys(["format_table", "library_versions", "to_markdown", "write_json"], ".report"),
    **dict.fromkeys(["evaluate", "task_sentences"], ".runner"),
    **dict.fromkeys(["evaluate_sts", "score_sts", "summarize"], ".sts"),
    **dict.fromkeys(["C_GRID", "C_GRID_KFOLD", "evaluate_transfer", "score_transfer"], ".transfer"),
    **dict.fromkeys(["Interval", "PairedBootstrap", "bootstrap_sts", "paired_bootstrap", "task_pairs"], ".bootstrap"),
    **dict.fromkeys(["System", "compare_systems", "load_result", "load_systems", "write_comparison"], ".compare"),
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .data import (STS_TASKS, TASKS, TRANSFER_TASKS, STSData, TaskSpec, TransferData, check_data_dir,
                       load_task, resolve_data_dir, tasks_for)
    from .download import (SENTEVAL_URL, DownloadError, cached_senteval_dir, download_senteval,
                           ensure_senteval, find_data_root, locate_senteval, senteval_url)
    from .report import format_table, library_versions, to_markdown, write_json
    from .runner import evaluate, task_sentences
    from .sts import evaluate_sts, score_sts, summarize
    from .transfer import C_GRID, C_GRID_KFOLD, evaluate_transfer, score_transfer
    from .bootstrap import Interval, PairedBootstrap, bootstrap_sts, paired_bootstrap, task_pairs
    from .compare import System, compare_systems, load_result, load_systems, write_comparison


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
