"""What both adapters need: an Encoder for a config source (the one rule of
:func:`tpembed.config.resolve_config`), and one Encoder per prompt template."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..config import ConfigSource, resolve_config
from ..encoder import Encoder

# Per-call templates are few in practice (query / document / a task's own); keep a bounded number.
_MAX_TEMPLATE_ENCODERS = 16


def portable_source(model: str) -> str:
    """An existing local path becomes absolute (so a saved reference works from any folder)."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def build_encoder(config: ConfigSource, settings: dict[str, Any]) -> Encoder:
    """An Encoder for ``config`` (a named config, a YAML file, an EncoderConfig, or None: the packaged
    default config) with ``settings`` on top, resolved by :func:`tpembed.config.resolve_config`.

    The layer settings are checked against the model's config before the weights load.
    """
    from ..models import load_checked

    resolved = resolve_config(config, settings).encoder_config()
    return Encoder(load_checked(resolved, progress=False), config=resolved)


class TemplateEncoders:
    """The base Encoder, plus Encoders for other templates that share its loaded model.

    A template (``{sentence}`` and, under TP, ``{placeholder}``) replaces the config's prompt
    method; every other setting (plan, TP range, output layer, ``<PST>`` seed ...) stays the base's.
    """

    def __init__(self, base: Encoder) -> None:
        self.base = base
        self._by_template: OrderedDict[str, Encoder] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, template: str | None) -> Encoder:
        """The Encoder for ``template`` (None or "": the base). Bad templates raise ValueError."""
        if not template or self.base.prompt.templates == (template,):
            return self.base
        if not isinstance(template, str):
            raise ValueError(f"a prompt template must be a string, got {type(template).__name__}")
        with self._lock:
            encoder = self._by_template.get(template)
            if encoder is None:
                encoder = Encoder(self.base.loaded, config=self.base.config, template=template)
                self._by_template[template] = encoder
                if len(self._by_template) > _MAX_TEMPLATE_ENCODERS:
                    self._by_template.popitem(last=False)
            else:
                self._by_template.move_to_end(template)
            return encoder

    def __getstate__(self) -> dict[str, Any]:
        # picklable (sentence-transformers' multi-process encode ships the model to workers)
        return {"base": self.base, "_by_template": self._by_template}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
