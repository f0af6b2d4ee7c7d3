"""Encode speed of one source tree of tpembed, to compare two commits one after the other.

    git worktree add /tmp/before 24685f5
    python benchmarks/before_after_speed.py /tmp/before && python benchmarks/before_after_speed.py .

SmolLM2 (packaged), 300 STS-B dev sentences, batch 32, fp32 CPU: vanilla PromptEOL and the TP preset.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(sys.argv[1]).resolve() / "src"))
warnings.simplefilter("ignore")

import torch  # noqa: E402

import tpembed  # noqa: E402
from tpembed import Encoder, load_model  # noqa: E402
from tpembed.evaluation.data import load_task  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "senteval"


def main() -> None:
    print(tpembed.__file__, "threads", torch.get_num_threads())
    sentences = load_task("STSBenchmark-dev", DATA, limit=150).sentences()
    loaded = load_model("smollm2-135m", device="cpu")
    plans = {
        "vanilla": dict(use_which_plan="vanilla", output_layer=-1),
        "tp": dict(use_which_plan="tp", tp_starting_index=1, tp_exiting_index=2, output_layer=28),
    }
    for name, settings in plans.items():
        encoder = Encoder(loaded, batch_size=32, **settings)
        encoder.encode(sentences[:32])  # warm-up
        start = time.perf_counter()
        encoder.encode(sentences, show_progress_bar=False)
        print(f"{name}: {len(sentences) / (time.perf_counter() - start):.1f} sentences/s")


if __name__ == "__main__":
    main()
