"""Vectors of the packaged named configs' settings (64 STS-B dev sentences, CPU fp32) from one source tree.

``tests/test_packaged_vectors.py`` runs it on the source of the commit before the redesign
(``git archive`` of REFERENCE_COMMIT, so no array is kept in git) with the *current* configs'
settings (a JSON file: name -> the settings that differ from the defaults), and compares the current
code's vectors with them. Settings that source cannot validate (a lever added after it: k-shot
demonstrations, demonstration ensembles, EmbedFilter) are listed under ``refused`` with the reason,
so nothing is left out silently. By hand:

    python tests/reference/make_packaged_vectors.py SRC_DIR OUT.npz SETTINGS.json
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(src: str, out: str, settings_file: str) -> None:
    sys.path.insert(0, str(Path(src).resolve()))  # that tree's tpembed, before the installed one
    sys.path.insert(1, str(HERE.parent))
    import numpy as np
    import torch

    import json

    from reference.sentences import REFERENCE_THREADS, reference_sentences
    from tpembed import Encoder, load_model
    from tpembed.config import EncoderConfig

    torch.set_num_threads(REFERENCE_THREADS)
    sentences = reference_sentences()
    vectors: dict[str, np.ndarray] = {"sentences": np.array(sentences)}
    refused: list[str] = []
    loaded = {}
    for name, settings in json.loads(Path(settings_file).read_text()).items():
        try:
            config = EncoderConfig(**settings)
        except ValueError as err:  # a setting this source does not have
            refused.append(f"{name}: {str(err).splitlines()[1:3]}")
            continue
        if config.model not in loaded:
            loaded[config.model] = load_model(config.model, device="cpu", dtype="float32")
        vectors[name] = Encoder(loaded[config.model], config=config).encode(sentences, show_progress_bar=False)
        print(name, vectors[name].shape, flush=True)
    np.savez(out, refused=np.array(refused, dtype=str), **vectors)


if __name__ == "__main__":
    main(*sys.argv[1:4])
