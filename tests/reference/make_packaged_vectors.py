"""Write the reference vectors of every packaged named config (64 STS-B dev sentences, CPU fp32).

The file pins what each shipped recipe computes, so a refactor that changes any vector fails
``tests/test_packaged_vectors.py``. Regenerate it only for a deliberate change of the method:

    python tests/reference/make_packaged_vectors.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[0]))

from reference.sentences import REFERENCE_THREADS, packaged_configs, reference_sentences  # noqa: E402


def main() -> None:
    import torch

    from tpembed import Encoder, load_model

    torch.set_num_threads(REFERENCE_THREADS)
    sentences = reference_sentences()
    out: dict[str, np.ndarray] = {"sentences": np.array(sentences)}
    loaded = {}
    for name, config in packaged_configs().items():
        if config.model not in loaded:
            loaded[config.model] = load_model(config.model, device="cpu", dtype="float32")
        out[name] = Encoder(loaded[config.model], config=config).encode(sentences, show_progress_bar=False)
        print(name, out[name].shape, flush=True)
    np.savez_compressed(HERE / "packaged_vectors.npz", **out)


if __name__ == "__main__":
    main()
