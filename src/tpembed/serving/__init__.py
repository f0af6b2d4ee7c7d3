"""OpenAI-compatible embeddings server: routes and schema, the dynamic-batching model worker.

Needs the ``serve`` extra (FastAPI, uvicorn, prometheus-client): ``pip install 'tpembed[serve]'``.
"""

from __future__ import annotations

from ..integrations._extras import require

for _module in ("fastapi", "uvicorn", "prometheus_client"):
    require(_module, "serve", "tpembed serve")

from .app import create_app  # noqa: E402

__all__ = ["create_app"]
