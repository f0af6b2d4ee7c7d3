"""The server says, in one log line, when every model is ready (with each served name's identity digest)."""

from __future__ import annotations

import logging
import re

from tpembed.config import EncoderConfig
from tpembed.serving.metrics import Metrics
from tpembed.serving.registry import ServedModels


def test_one_ready_line_with_every_identity(tiny_folder, caplog):
    configs = {
        "tiny-tp": EncoderConfig(model=str(tiny_folder), tp_exiting_index=2),
        "tiny": EncoderConfig(model=str(tiny_folder), use_which_plan="vanilla"),
    }
    served = ServedModels(configs, Metrics())
    with caplog.at_level(logging.INFO, logger="tpembed.serving"):
        served.start()
        assert served.wait_loaded(120)
    try:
        ready = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ready:")]
        assert len(ready) == 1, [r.getMessage() for r in caplog.records]
        for name in configs:
            digest = served.identities[name]
            assert digest and re.fullmatch(r"[0-9a-f]{12}", digest)
            assert f"{name} (identity {digest}, dim 32)" in ready[0]
    finally:
        served.stop(10)
