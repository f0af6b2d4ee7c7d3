"""SentEval task registry and file readers.

Tasks are described as data (:class:`TaskSpec` in :data:`TASKS`); one reader per
file format turns a task's files into :class:`STSData` or :class:`TransferData`.

Sentences are returned exactly as SentEval hands them to its batcher: SentEval
splits every sentence on whitespace and the (SimCSE/PromptEOL-style) batcher joins
the tokens back with a single space, so every reader returns
``" ".join(text.split())``. Text keeps the files' casing/tokenisation.

Encodings follow SentEval: MR/CR/SUBJ/MPQA/TREC are decoded as latin-1 (SentEval's
choice; TREC's train file is not valid UTF-8), everything else as UTF-8 (the MRPC
BOM sits in the header row, which is skipped).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

TaskKind = Literal["sts", "transfer"]
DATA_ENV_VAR = "TPEMBED_DATA"


@dataclass(frozen=True)
class TaskSpec:
    """Static description of one SentEval task.

    ``reader`` picks the parser, ``folder``/``files`` are relative to the data dir,
    ``subsets`` are STS12-16 subset names, ``expected`` holds the documented sizes
    (``(split, count)`` pairs; STS12-16 use ``"pairs"`` for the scored total) and
    ``protocol`` names the scoring protocol.
    """

    name: str
    kind: TaskKind
    reader: str
    folder: str
    files: tuple[str, ...]
    expected: tuple[tuple[str, int], ...]
    protocol: str
    display: str
    subsets: tuple[str, ...] = ()
    nclasses: int = 2

    @property
    def expected_counts(self) -> dict[str, int]:
        """Documented sizes as a dict (split -> count)."""
        return dict(self.expected)

    def paths(self, data_dir: str | os.PathLike[str]) -> list[Path]:
        """Absolute paths of every file this task reads."""
        root = Path(data_dir) / self.folder
        return [root / f for f in self.files]


def _sts_files(subsets: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"STS.{kind}.{s}.txt" for s in subsets for kind in ("input", "gs"))


def _sts_year(name: str, folder: str, subsets: tuple[str, ...], n: int) -> TaskSpec:
    return TaskSpec(
        name=name, kind="sts", reader="sts_year", folder=f"STS/{folder}",
        files=_sts_files(subsets), subsets=subsets, expected=(("pairs", n),),
        protocol="all", display=name,
    )


# Subset lists and order are SentEval's (senteval/sts.py); STS13 SMT is not distributed.
_STS_YEARS = (
    ("STS12", "STS12-en-test",
     ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"), 3108),
    ("STS13", "STS13-en-test", ("FNWN", "headlines", "OnWN"), 1500),
    ("STS14", "STS14-en-test",
     ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"), 3750),
    ("STS15", "STS15-en-test",
     ("answers-forums", "answers-students", "belief", "headlines", "images"), 3000),
    ("STS16", "STS16-en-test",
     ("answer-answer", "headlines", "plagiarism", "postediting", "question-question"), 1186),
)

_SPECS: list[TaskSpec] = [_sts_year(*row) for row in _STS_YEARS] + [
    TaskSpec("STSBenchmark", "sts", "stsb", "STS/STSBenchmark", ("sts-test.csv",),
             (("test", 1379),), "single", "STS-B"),
    TaskSpec("STSBenchmark-dev", "sts", "stsb", "STS/STSBenchmark", ("sts-dev.csv",),
             (("dev", 1500),), "single", "STS-B-dev"),
    TaskSpec("SICKRelatedness", "sts", "sick", "SICK", ("SICK_test_annotated.txt",),
             (("test", 4927),), "single", "SICK-R"),
    TaskSpec("MR", "transfer", "binary", "MR", ("rt-polarity.pos", "rt-polarity.neg"),
             (("all", 10662),), "inner-kfold", "MR"),
    TaskSpec("CR", "transfer", "binary", "CR", ("custrev.pos", "custrev.neg"),
             (("all", 3775),), "inner-kfold", "CR"),
    # SentEval: objective = label 1 ("pos" file first), subjective = label 0.
    TaskSpec("SUBJ", "transfer", "binary", "SUBJ", ("subj.objective", "subj.subjective"),
             (("all", 10000),), "inner-kfold", "SUBJ"),
    TaskSpec("MPQA", "transfer", "binary", "MPQA", ("mpqa.pos", "mpqa.neg"),
             (("all", 10606),), "inner-kfold", "MPQA"),
    TaskSpec("SST2", "transfer", "sst", "SST/binary",
             ("sentiment-train", "sentiment-dev", "sentiment-test"),
             (("train", 67349), ("dev", 872), ("test", 1821)), "split", "SST"),
    TaskSpec("TREC", "transfer", "trec", "TREC", ("train_5500.label", "TREC_10.label"),
             (("train", 5452), ("test", 500)), "kfold", "TREC", nclasses=6),
    TaskSpec("MRPC", "transfer", "mrpc", "MRPC",
             ("msr_paraphrase_train.txt", "msr_paraphrase_test.txt"),
             (("train", 4076), ("test", 1725)), "kfold", "MRPC"),
]

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _SPECS}
"""Registry of every supported task, keyed by the paper's / SentEval's names."""

STS_TASKS: tuple[str, ...] = ("STS12", "STS13", "STS14", "STS15", "STS16",
                              "STSBenchmark", "SICKRelatedness")
TRANSFER_TASKS: tuple[str, ...] = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")

TREC_LABELS: dict[str, int] = {"ABBR": 0, "DESC": 1, "ENTY": 2, "HUM": 3, "LOC": 4, "NUM": 5}

Mode = Literal["test", "dev", "fasttest"]
TaskSet = Literal["sts", "transfer", "full", "stsb"]

KFOLD_BY_MODE: dict[str, int] = {"test": 10, "dev": 5, "fasttest": 5}
"""SimCSE's evaluation.py: 10-fold in test mode, 5-fold in dev/fasttest."""


def tasks_for(task_set: TaskSet, mode: Mode = "test") -> list[str]:
    """Task names for a task set, mirroring the paper / SimCSE's evaluation script.

    ``sts`` -> the 7 STS tasks (``["STSBenchmark-dev"]`` in dev mode), ``transfer`` ->
    MR CR SUBJ MPQA SST2 TREC MRPC, ``full`` -> both, ``stsb`` -> ``["STSBenchmark"]``
    (``["STSBenchmark-dev"]`` in dev mode).
    """
    check_mode(mode)
    sts = ["STSBenchmark-dev"] if mode == "dev" else list(STS_TASKS)
    sets = {"sts": sts, "transfer": list(TRANSFER_TASKS), "full": sts + list(TRANSFER_TASKS),
            "stsb": ["STSBenchmark-dev"] if mode == "dev" else ["STSBenchmark"]}
    if task_set not in sets:
        raise ValueError(f"unknown task set {task_set!r}; choose one of {', '.join(sets)}")
    return sets[task_set]


def check_mode(mode: str) -> None:
    """ValueError unless ``mode`` is test, dev or fasttest."""
    if mode not in KFOLD_BY_MODE:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(KFOLD_BY_MODE)}")


# --------------------------------------------------------------------------- containers


@dataclass
class STSSubset:
    """One scored STS file: aligned sentence pairs and gold scores."""

    name: str
    sent1: list[str]
    sent2: list[str]
    gold: np.ndarray

    def __len__(self) -> int:
        return len(self.gold)


@dataclass
class STSData:
    """An STS task: one or more subsets (STS12-16 have several)."""

    spec: TaskSpec
    subsets: dict[str, STSSubset]

    @property
    def n_pairs(self) -> int:
        return sum(len(s) for s in self.subsets.values())

    def sentences(self) -> list[str]:
        """Every sentence of the task (with repeats)."""
        return [t for s in self.subsets.values() for t in (*s.sent1, *s.sent2)]

    def counts(self) -> dict[str, int]:
        """Sizes in the shape of ``spec.expected``."""
        if self.spec.reader == "sts_year":
            return {"pairs": self.n_pairs}
        return {k: len(v) for k, v in self.subsets.items()}


@dataclass
class TransferSplit:
    """Examples of one split; ``text_b`` is set for sentence-pair tasks (MRPC)."""

    text: list[str]
    labels: np.ndarray
    text_b: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TransferData:
    """A transfer task; splits are ``all`` (CV tasks), ``train/dev/test`` or ``train/test``."""

    spec: TaskSpec
    splits: dict[str, TransferSplit]
    meta: dict[str, object] = field(default_factory=dict)

    def sentences(self) -> list[str]:
        out: list[str] = []
        for split in self.splits.values():
            out.extend(split.text)
            if split.text_b is not None:
                out.extend(split.text_b)
        return out

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits.items()}


TaskData = STSData | TransferData


# --------------------------------------------------------------------------- helpers


def normalize(text: str) -> str:
    """SentEval's view of a sentence: whitespace-split, then joined by one space."""
    return " ".join(text.split())


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """Return the data dir as a Path; ``None`` falls back to ``$TPEMBED_DATA``.

    Raises FileNotFoundError (with a hint) when the folder does not exist.
    """
    if data_dir is None:
        env = os.environ.get(DATA_ENV_VAR)
        if not env:
            raise ValueError(
                f"no SentEval data dir given and ${DATA_ENV_VAR} is not set; pass the folder "
                f"that contains STS/, SICK/, MR/, ... (--data DIR or ${DATA_ENV_VAR}=DIR), or fetch it "
                "with: tpembed data download DIR")
        data_dir = env
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"SentEval data dir {str(path)!r} does not exist or is not a folder; expected a "
            "folder containing STS/, SICK/, MR/, CR/, SUBJ/, MPQA/, SST/, TREC/, MRPC/ "
            "(fetch it with: tpembed data download DIR)")
    return path


def get_spec(task: str | TaskSpec) -> TaskSpec:
    """Look a task up by name (or pass a TaskSpec through)."""
    if isinstance(task, TaskSpec):
        return task
    try:
        return TASKS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}") from None


def _require_file(path: Path, task: str, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{task}: missing file {str(path)!r} (expected {what})")
    return path


def _read_lines(path: Path, encoding: str) -> list[str]:
    # SentEval reads with read().splitlines() / line iteration; both agree on these files.
    with open(path, encoding=encoding, newline=None) as fh:
        return fh.read().splitlines()


def _head(items: list, limit: int | None) -> list:
    return items if limit is None else items[:limit]


def subset_limits(limit: int | None, n_subsets: int) -> list[int | None]:
    """``limit`` pairs of an STS year shared across its subsets (the first ones get the remainder),
    at least 2 per subset (a Spearman needs two pairs)."""
    if limit is None:
        return [None] * n_subsets
    base, extra = divmod(limit, n_subsets)
    return [max(2, base + (1 if i < extra else 0)) for i in range(n_subsets)]


def _check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")


def _columns(line: str, n: int, path: Path, lineno: int) -> list[str]:
    cols = line.strip().split("\t")
    if len(cols) < n:
        raise ValueError(
            f"{path}:{lineno}: expected at least {n} tab-separated columns, got {len(cols)}")
    return cols


# --------------------------------------------------------------------------- readers


def read_sts_subset(folder: Path, subset: str, task: str = "STS",
                    limit: int | None = None) -> STSSubset:
    """Read ``STS.input.<subset>.txt`` + ``STS.gs.<subset>.txt``; blank gold => skip pair."""
    inp = _require_file(folder / f"STS.input.{subset}.txt", task,
                        "one 'sentence1<TAB>sentence2' per line")
    gs = _require_file(folder / f"STS.gs.{subset}.txt", task,
                       "one gold score per line, blank = not scored")
    lines = _read_lines(inp, "utf-8")
    gold_lines = _read_lines(gs, "utf-8")
    if len(lines) != len(gold_lines):
        raise ValueError(f"{task}/{subset}: {inp.name} has {len(lines)} lines but "
                         f"{gs.name} has {len(gold_lines)}; they must be line-aligned")
    s1: list[str] = []
    s2: list[str] = []
    gold: list[float] = []
    for i, (line, g) in enumerate(zip(lines, gold_lines), start=1):
        if not g.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise ValueError(f"{inp}:{i}: expected 'sentence1<TAB>sentence2', "
                             f"got {len(parts)} tab-separated fields")
        s1.append(normalize(parts[0]))
        s2.append(normalize(parts[1]))
        gold.append(float(g))
    s1, s2, gold = _head(s1, limit), _head(s2, limit), _head(gold, limit)
    return STSSubset(subset, s1, s2, np.asarray(gold, dtype=np.float64))


def read_pair_scores(path: Path, cols: tuple[int, int, int], header: bool, task: str,
                     name: str, limit: int | None = None) -> STSSubset:
    """Read a TSV of (sentence A, sentence B, score) at column indices ``cols``."""
    _require_file(path, task, f"tab-separated, sentences in columns {cols[0]} and "
                  f"{cols[1]}, score in column {cols[2]}")
    lines = _read_lines(path, "utf-8")[1 if header else 0:]
    s1: list[str] = []
    s2: list[str] = []
    gold: list[float] = []
    for i, line in enumerate(lines, start=2 if header else 1):
        if limit is not None and len(gold) >= limit:
            break
        c = _columns(line, max(cols) + 1, path, i)
        s1.append(normalize(c[cols[0]]))
        s2.append(normalize(c[cols[1]]))
        gold.append(float(c[cols[2]]))
    return STSSubset(name, s1, s2, np.asarray(gold, dtype=np.float64))


def read_binary(pos_path: Path, neg_path: Path, task: str,
                limit: int | None = None) -> TransferSplit:
    """MR/CR/SUBJ/MPQA: one sentence per line; first file = label 1, second = label 0.

    With ``limit=N`` the first ceil(N/2) lines of the first file and floor(N/2) of the
    second are used, so both classes stay present.
    """
    pos = _read_lines(_require_file(pos_path, task, "one sentence per line (label 1)"), "latin-1")
    neg = _read_lines(_require_file(neg_path, task, "one sentence per line (label 0)"), "latin-1")
    if limit is not None:
        pos, neg = pos[: limit - limit // 2], neg[: limit // 2]
    text = [normalize(t) for t in pos + neg]
    labels = np.asarray([1] * len(pos) + [0] * len(neg), dtype=np.int64)
    return TransferSplit(text, labels)


def read_sst(path: Path, task: str = "SST2", limit: int | None = None) -> TransferSplit:
    """SST binary: ``sentence<TAB>label`` per line."""
    lines = _read_lines(_require_file(path, task, "'sentence<TAB>label' per line"), "utf-8")
    text, labels = [], []
    for i, line in enumerate(_head(lines, limit), start=1):
        c = _columns(line, 2, path, i)
        text.append(normalize(c[0]))
        labels.append(int(c[1]))
    return TransferSplit(text, np.asarray(labels, dtype=np.int64))


def read_trec(path: Path, task: str = "TREC", limit: int | None = None) -> TransferSplit:
    """TREC: ``COARSE:fine question ...``; the coarse label is the class (6 classes)."""
    lines = _read_lines(_require_file(path, task, "'COARSE:fine question' per line"), "latin-1")
    text, labels = [], []
    for i, line in enumerate(_head(lines, limit), start=1):
        target, _, rest = line.strip().partition(":")
        if target not in TREC_LABELS or " " not in rest:
            raise ValueError(f"{path}:{i}: expected 'COARSE:fine question', got {line[:60]!r}")
        text.append(normalize(rest.split(" ", 1)[1]))
        labels.append(TREC_LABELS[target])
    return TransferSplit(text, np.asarray(labels, dtype=np.int64))


def read_mrpc(path: Path, task: str = "MRPC", limit: int | None = None) -> TransferSplit:
    """MRPC: header row, then ``quality<TAB>id1<TAB>id2<TAB>s1<TAB>s2``."""
    _require_file(path, task, "header row, then 'Quality, #1 ID, #2 ID, #1 String, #2 String'")
    lines = _read_lines(path, "utf-8-sig")[1:]
    a, b, labels = [], [], []
    for i, line in enumerate(_head(lines, limit), start=2):
        c = _columns(line, 5, path, i)
        labels.append(int(c[0]))
        a.append(normalize(c[3]))
        b.append(normalize(c[4]))
    return TransferSplit(a, np.asarray(labels, dtype=np.int64), text_b=b)


# --------------------------------------------------------------------------- loading


def load_task(task: str | TaskSpec, data_dir: str | os.PathLike[str] | None,
              limit: int | None = None) -> TaskData:
    """Read one task from ``data_dir``.

    ``limit=N`` keeps the first N items: N pairs per STS task (STS12-16: shared evenly across the
    year's subsets, at least 2 each so every subset's Spearman is defined), per split for
    SST2/TREC/MRPC, and N in total (half per class file) for MR/CR/SUBJ/MPQA.
    """
    spec = get_spec(task)
    _check_limit(limit)
    root = resolve_data_dir(data_dir)
    folder = root / spec.folder
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{spec.name}: missing folder {str(folder)!r} "
            f"(expected files: {', '.join(spec.files)})")
    paths = spec.paths(root)
    r = spec.reader
    if r == "sts_year":
        shares = subset_limits(limit, len(spec.subsets))
        subs = {s: read_sts_subset(folder, s, spec.name, n) for s, n in zip(spec.subsets, shares)}
        return STSData(spec, subs)
    if r in ("stsb", "sick"):
        split = spec.expected[0][0]
        cols, header = ((5, 6, 4), False) if r == "stsb" else ((1, 2, 3), True)
        return STSData(spec, {split: read_pair_scores(paths[0], cols, header, spec.name,
                                                      split, limit)})
    if r == "binary":
        return TransferData(spec, {"all": read_binary(paths[0], paths[1], spec.name, limit)})
    readers = {"sst": read_sst, "trec": read_trec, "mrpc": read_mrpc}
    if r in readers:
        names = [k for k, _ in spec.expected]
        return TransferData(spec, {n: readers[r](p, spec.name, limit)
                                   for n, p in zip(names, paths)})
    raise ValueError(f"{spec.name}: unknown reader {r!r}")


def check_data_dir(data_dir: str | os.PathLike[str] | None,
                   tasks: Iterable[str] | None = None,
                   check_counts: bool = True) -> dict[str, dict[str, int]]:
    """Verify a SentEval folder: every file exists and (optionally) sizes match the README.

    Returns ``{task: counts}`` (empty when ``check_counts`` is false). Raises
    FileNotFoundError listing every missing file,
    or ValueError listing every count mismatch.
    """
    root = resolve_data_dir(data_dir)
    names = list(TASKS) if tasks is None else list(tasks)
    specs = [get_spec(t) for t in names]
    missing = [str(p) for s in specs for p in s.paths(root) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"SentEval data dir {str(root)!r} is incomplete; missing {len(missing)} file(s):\n  "
            + "\n  ".join(missing))
    counts: dict[str, dict[str, int]] = {}
    bad: list[str] = []
    for spec in specs:
        if not check_counts:
            continue
        got = load_task(spec, root).counts()
        counts[spec.name] = got
        if got != spec.expected_counts:
            bad.append(f"{spec.name}: expected {spec.expected_counts}, got {got}")
    if bad:
        raise ValueError("SentEval data sizes differ from the documented ones:\n  "
                         + "\n  ".join(bad))
    return counts
