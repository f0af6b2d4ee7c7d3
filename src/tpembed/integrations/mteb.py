"""tpembed inside MTEB (v2): an ``AbsEncoder`` that runs the Encoder, with a complete ``ModelMeta``.

Which prompt a text gets is decided per ``encode`` call from MTEB's task and ``prompt_type``,
with MTEB's own precedence (see :func:`mteb.models.abs_encoder.get_prompt_name`) over the
``templates`` mapping, and the config's prompt when no key matches:

==========================  ============================================================
templates key               used for
==========================  ============================================================
``"<TaskName>-query"``      that task's queries (``"-document"``: its documents)
``"<TaskName>"``            every text of that task
``"<TaskType>-query"``      queries of tasks of that type, e.g. ``"Retrieval-query"``
``"<TaskType>"``            every text of tasks of that type, e.g. ``"STS"``, ``"Classification"``
``"query"``/``"document"``  queries / documents of any task (retrieval, reranking ...)
(no match)                  the config's prompt: ``prompt_method`` / ``template`` (the paper's
                            PromptEOL by default) — STS, classification, clustering ... and
                            retrieval unless you give query / document templates
==========================  ============================================================

A template replaces the prompt method only; the plan, TP range, output layer and the rest of the
config apply to every text. MTEB's task instructions are not used: tpembed's prompt is the
instruction.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._extras import require

# before anything heavy, so a missing extra fails fast
require("mteb", "mteb", "tpembed's MTEB integration")

import mteb  # noqa: E402
from mteb.abstasks import AbsTask  # noqa: E402
from mteb.models.abs_encoder import AbsEncoder, get_prompt_name  # noqa: E402
from mteb.models.model_meta import ModelMeta, ScoringFunction  # noqa: E402

from ..config import ConfigSource, EncoderConfig, vector_settings  # noqa: E402
from ..encoder import Encoder  # noqa: E402
from ..evaluation.report import box_table  # noqa: E402
from ..identity import encoder_identity  # noqa: E402
from ..prompts import custom_prompt  # noqa: E402
from ._shared import TemplateEncoders, build_encoder, portable_source  # noqa: E402

if TYPE_CHECKING:
    import numpy as np
    from torch.utils.data import DataLoader

    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.types import PromptType

CITATION = """@inproceedings{fu-etal-2025-token,
  title = {Token Prepending: A Training-Free Approach for Eliciting Better Sentence Embeddings from {LLM}s},
  author = {Fu, Yuchen and Cheng, Zifeng and Jiang, Zhiwei and Wang, Zhonghui and Yin, Yafeng and Li, Zhengliang and Gu, Qing},
  booktitle = {Proceedings of the 63rd Annual Meeting of the Association for Computational Linguistics (Volume 1: Long Papers)},
  year = {2025},
  pages = {3168--3181},
  url = {https://aclanthology.org/2025.acl-long.159/}
}"""


def _meta_name(model: str) -> str:
    """``tpembed/<model>``: MTEB wants "organization/name"; paths give their last component."""
    path = Path(model).expanduser()
    if path.exists() or model.startswith((".", "/", "~")):
        short = path.stem if path.suffix == ".gguf" else path.name
    else:
        short = model.replace("/", "__")
    return f"tpembed/{short}"


def _local_revision(model: str) -> str:
    """No file hash or hub commit: tell models apart by where they were loaded from."""
    return "local-" + hashlib.sha256(portable_source(model).encode("utf-8")).hexdigest()[:10]


def _experiment(encoder: Encoder, templates: Mapping[str, str]) -> dict[str, Any]:
    """What keys MTEB's result folders: the Encoder's identity (the weights and every setting that
    changes a vector, :func:`tpembed.identity.encoder_identity`) and the per-task templates.

    Settings that change no vector (batching, device index, the prefix cache) are not in it, so
    they share results. An in-memory model without a stable identity is keyed by its settings.
    """
    identity = encoder_identity(encoder)
    if identity is None:
        settings = encoder.config.model_dump(include=set(vector_settings()) - {"model"})
        identity = {"settings": {k: v for k, v in settings.items() if v is not None}}
    experiment: dict[str, Any] = {"identity": identity}
    if templates:
        experiment["templates"] = dict(templates)
    return experiment


def build_model_meta(encoder: Encoder, templates: Mapping[str, str]) -> ModelMeta:
    """A full ModelMeta for an Encoder: MTEB replaces a model without one by an empty, unusable meta."""
    config, identity, model = encoder.config, encoder.loaded.identity, encoder.loaded.model
    n_parameters = sum(p.numel() for p in model.parameters())
    bytes_per_parameter = next(model.parameters()).element_size()
    source = config.model
    is_hub_id = "/" in source and not Path(source).expanduser().exists() and not source.startswith((".", "/", "~"))
    revision = identity.get("sha256", "")[:12] or identity.get("revision") or _local_revision(source)
    frameworks = ["PyTorch", "Transformers"] + (["GGUF"] if "sha256" in identity else [])
    return ModelMeta(
        loader=load_tpembed_model,
        # every setting (vector ones and free ones): the loader rebuilds the Encoder from them
        loader_kwargs=config.model_dump() | {"model": portable_source(source)},
        name=_meta_name(source),
        revision=revision,
        release_date=None,
        languages=None,
        n_parameters=n_parameters,
        n_embedding_parameters=model.get_input_embeddings().weight.numel(),
        memory_usage_mb=round(n_parameters * bytes_per_parameter / 2**20, 1),
        max_tokens=encoder.max_length,
        embed_dim=encoder.embedding_dim,
        license=None,
        open_weights=True,
        public_training_code=None,
        public_training_data=None,
        framework=frameworks,
        reference="https://arxiv.org/abs/2412.11556",
        similarity_fn_name=ScoringFunction.COSINE,
        use_instructions=True,
        training_datasets=None,
        adapted_from=source if is_hub_id else None,
        modalities=["text"],
        model_type=["dense"],
        citation=CITATION,
        experiment_kwargs=_experiment(encoder, templates),
    )


def check_templates(templates: Mapping[str, str] | None, *, use_tp: bool) -> dict[str, str]:
    """Valid templates (ValueError otherwise), checked without a model.

    Keys MTEB does not know (a typo, or the name of a task of your own) are kept; MTEB warns.
    """
    templates = dict(templates or {})
    bad = [k for k, v in templates.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ValueError(f"templates must map strings to template strings; bad entries: {bad}")
    for template in templates.values():
        custom_prompt(template, use_placeholder=use_tp)
    AbsEncoder.validate_task_to_prompt_name(templates, raise_for_invalid_keys=False)
    return templates


class TPEmbedMTEB(AbsEncoder):
    """MTEB's encoder interface over a tpembed :class:`~tpembed.Encoder` (``model`` is that Encoder).

    ``templates`` choose the prompt per task / query / document (see the module docstring);
    every other setting is the Encoder's. ``encode_kwargs`` ``batch_size`` is the number of
    texts per forward pass (``max_batch_tokens`` still applies).
    """

    def __init__(self, encoder: Encoder, templates: Mapping[str, str] | None = None) -> None:
        self.model = encoder
        self.templates = check_templates(templates, use_tp=encoder.use_tp)  # fails now, not mid-benchmark
        self._encoders = TemplateEncoders(encoder)
        self.mteb_model_meta = build_model_meta(encoder, self.templates)

    def template_for(self, task_metadata: TaskMetadata, prompt_type: PromptType | None) -> str | None:
        """The template MTEB's precedence picks for this task and prompt type (None: the config's prompt)."""
        key = get_prompt_name(self.templates, task_metadata, prompt_type)
        return self.templates[key] if key else None

    def encode(
        self,
        inputs: DataLoader[Any],
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        encoder = self._encoders.get(self.template_for(task_metadata, prompt_type))
        return encoder.encode(
            texts, batch_size=kwargs.get("batch_size"), show_progress_bar=kwargs.get("show_progress_bar")
        )

    def __repr__(self) -> str:
        return f"TPEmbedMTEB({self.model!r}, templates={self.templates!r})"


def mteb_model(
    config: ConfigSource = None,
    *,
    templates: Mapping[str, str] | None = None,
    **encoder_settings: Any,
) -> TPEmbedMTEB:
    """See :func:`tpembed.mteb_model`."""
    return TPEmbedMTEB(build_encoder(config, encoder_settings), templates)


def load_tpembed_model(
    model_name: str,
    revision: str | None = None,
    device: str | None = None,
    *,
    templates: Mapping[str, str] | None = None,
    identity: Mapping[str, Any] | None = None,
    **settings: Any,
) -> TPEmbedMTEB:
    """``ModelMeta.loader``: rebuild the model from the settings kept in its meta.

    ``identity`` (from the meta's experiment) is compared with the rebuilt Encoder's: a warning
    says when the vectors will not be those the meta's results were computed with.
    """
    if device is not None:
        settings["device"] = device
    model = mteb_model(EncoderConfig(**settings), templates=templates)
    now = _experiment(model.model, {})["identity"]
    if identity is not None and dict(identity) != now:
        changed = sorted(k for k in set(identity) | set(now) if identity.get(k) != now.get(k))
        warnings.warn(
            f"{model_name}: the rebuilt model's identity differs from its meta's in {', '.join(changed)}; "
            "its embeddings will not match the results kept under that meta",
            UserWarning,
            stacklevel=2,
        )
    return model


def resolve_task(name: str | AbsTask) -> AbsTask:
    """An MTEB task by name (``STSBenchmark``), or ``module:Class`` for a task class of your own."""
    if isinstance(name, AbsTask):
        return name
    name = name.strip()
    if ":" not in name:
        try:
            return mteb.get_task(name)
        except KeyError as err:
            message = str(err.args[0] if err.args else err)
            raise ValueError(message.removeprefix("KeyError: ")) from None
    module_name, _, attr = name.partition(":")
    try:
        task = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import task {name!r}: {err}") from None
    task = task() if isinstance(task, type) else task
    if not isinstance(task, AbsTask):
        raise ValueError(f"{name!r} is not an MTEB task (an AbsTask)")
    return task


def run_tasks(
    model: TPEmbedMTEB,
    tasks: Sequence[str | AbsTask],
    *,
    output_dir: str | os.PathLike[str] | None = None,
    show_progress_bar: bool = True,
) -> dict[str, dict[str, Any]]:
    """Evaluate with ``mteb.evaluate``; ``{task: {"score": main score x100, "metric": name}}``.

    With ``output_dir``, MTEB writes its result JSON files there (one folder per model and
    settings) and reuses ones already there; without it nothing is written.
    """
    task_list = [resolve_task(t) for t in tasks if not isinstance(t, str) or t.strip()]
    if not task_list:
        raise ValueError("no task given (e.g. STSBenchmark,SICK-R)")
    cache = mteb.ResultCache(cache_path=str(output_dir)) if output_dir is not None else None
    result = mteb.evaluate(
        model,
        task_list,
        cache=cache,
        encode_kwargs={"batch_size": model.model.config.batch_size, "show_progress_bar": show_progress_bar},
        show_progress_bar=show_progress_bar,
    )
    metrics = {t.metadata.name: t.metadata.main_score for t in task_list}
    return {
        r.task_name: {"score": 100 * float(r.main_score), "metric": metrics.get(r.task_name, "main_score")}
        for r in result.task_results
    }


def format_scores(results: Mapping[str, Mapping[str, Any]]) -> str:
    """The paper-style box table of MTEB main scores (x100, tasks in run order, then Avg.)."""
    names = list(results)
    values = [float(results[n]["score"]) for n in names]
    table = box_table(names + ["Avg."], values + [sum(values) / len(values)])
    metrics = ", ".join(f"{n}: {results[n]['metric']}" for n in names)
    return f"{table}\nmain scores (x100) — {metrics}"
