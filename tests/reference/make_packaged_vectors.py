"""Vectors of every packaged named config (64 STS-B dev sentences, CPU fp32) from one source tree.

``tests/test_packaged_vectors.py`` runs it on the source of the commit before the redesign
(``git archive`` of REFERENCE_COMMIT, so no array is kept in git) and compares the current code's
vectors with them. By hand:

    python tests/reference/make_packaged_vectors.py SRC_DIR OUT.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(src: str, out: str) -> None:
    sys.path.insert(0, str(Path(src).resolve()))  # that tree's tpembed, before the installed one
    sys.path.insert(1, str(HERE.parent))
    import numpy as np
    import torch

    from reference.sentences import REFERENCE_THREADS, packaged_configs, reference_sentences
    from tpembed import Encoder, load_model

    torch.set_num_threads(REFERENCE_THREADS)
    sentences = reference_sentences()
    vectors: dict[str, np.ndarray] = {"sentences": np.array(sentences)}
    loaded = {}
    for name, config in packaged_configs().items():
        if config.model not in loaded:
            loaded[config.model] = load_model(config.model, device="cpu", dtype="float32")
        vectors[name] = Encoder(loaded[config.model], config=config).encode(sentences, show_progress_bar=False)
        print(name, vectors[name].shape, flush=True)
    np.savez(out, **vectors)


if __name__ == "__main__":
    main(*sys.argv[1:3])
