"""The ``tpembed`` command line (typer). Commands stay thin: parse, check, call the library.

Each command is one module here; importing them registers them on :data:`app`.
"""

from ._app import app
from . import compare, configs, data, embed, encode, evaluate, mteb, search, serve, sweep  # noqa: E402,F401  (register the commands)

__all__ = ["app"]
