"""SentEval-style evaluation of any ``encode_fn: list[str] -> np.ndarray (n, d)``.

Independent of the encoder: nothing here imports torch.
"""

from .data import (STS_TASKS, TASKS, TRANSFER_TASKS, STSData, TaskSpec, TransferData,
                   check_data_dir, load_task, resolve_data_dir)
from .download import (SENTEVAL_URL, DownloadError, cached_senteval_dir, download_senteval,
                       ensure_senteval, find_data_root, locate_senteval, senteval_url)
from .report import format_table, library_versions, to_markdown, write_json
from .runner import evaluate, task_sentences, tasks_for
from .sts import evaluate_sts, score_sts, summarize
from .transfer import C_GRID, C_GRID_KFOLD, evaluate_transfer, score_transfer

__all__ = [
    "C_GRID", "C_GRID_KFOLD", "SENTEVAL_URL", "STS_TASKS", "TASKS", "TRANSFER_TASKS",
    "DownloadError", "STSData", "TaskSpec", "TransferData",
    "cached_senteval_dir", "check_data_dir", "download_senteval", "ensure_senteval", "evaluate", "evaluate_sts", "evaluate_transfer",
    "find_data_root", "format_table", "library_versions", "load_task", "locate_senteval", "resolve_data_dir",
    "score_sts", "score_transfer", "senteval_url", "summarize", "task_sentences", "tasks_for", "to_markdown", "write_json",
]
