"""How several vectors of one sentence become its embedding: prompt ensembles and layer lists."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def ensemble_mean(members: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of the members' L2-normalised embeddings (rows align); one member is returned as is.

    Normalising first keeps a member with larger norms (another prompt, another layer's scale)
    from dominating the mean; a single member needs no rescaling (cosine ignores it), so an
    ensemble of one is exactly the plain method.
    """
    if not members:
        raise ValueError("an ensemble needs at least one member")
    if len(members) == 1:
        return members[0]
    unit = [m / np.maximum(np.linalg.norm(m, axis=-1, keepdims=True), 1e-12) for m in members]
    return np.mean(unit, axis=0).astype(members[0].dtype, copy=False)


def layer_mean(by_layer: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of the last-token states of several output layers; one layer is returned as is."""
    if not by_layer:
        raise ValueError("need at least one output layer")
    if len(by_layer) == 1:
        return by_layer[0]
    return np.mean(by_layer, axis=0).astype(by_layer[0].dtype, copy=False)
