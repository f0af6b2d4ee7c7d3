"""Low precision and other devices give the fp32 CPU vectors, within bf16's tolerance, for every lever.

The reference is the packaged SmolLM2-135M in fp32 on the CPU. Each lever setting is encoded in bf16
on the CPU (dtype="bfloat16": ~1.9x faster on CPUs with native bf16) and, where CUDA exists, on the GPU
in bf16 and fp32; CUDA cases skip on a machine without it (benchmarks/gpu_check.sh runs them on a GPU).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tpembed import Encoder, load_model

# name: (named config, overrides) — vanilla, TP, CP (with TP and a layer list), attention sum with a
# demonstration and layer list, the same without the prefix cache, a layer mean under TP
LEVERS = {
    "vanilla": ("smollm2-135m", {}),
    "tp": ("smollm2-135m-tp", {}),
    "tp-cp-layers": ("smollm2-135m-tp-cp", {}),
    "attention-sum-demo": ("smollm2-135m-best", {}),
    "no-prefix-cache": ("smollm2-135m-best", {"prefix_cache": False}),
    "tp-layer-list": ("smollm2-135m-tp", {"output_layer": [26, 27, 28]}),
}

SENTENCES = [
    "A man is playing a guitar.",
    "A woman is slicing an onion with a large knife.",
    "Stocks fell sharply on Tuesday after the central bank's report.",
    "Two children run through a field of flowers.",
    "What is the capital of France?",
    "The cat sat on the mat.",
    "A plane is taking off.",
    "Three dogs are pulling a sled across the snow while a crowd watches from the side of the trail.",
]

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
TARGETS = [
    pytest.param(("cpu", "bfloat16"), id="cpu-bf16"),
    pytest.param(("cuda", "bfloat16"), id="cuda-bf16", marks=CUDA),
    pytest.param(("cuda", "float32"), id="cuda-fp32", marks=CUDA),
]
# per-sentence cosine to the fp32 CPU vector: bf16 keeps ~3 significant digits per operation
MIN_COSINE = {"bfloat16": 0.995, "float32": 0.99999}


@pytest.fixture(scope="module")
def reference_model():
    return load_model("smollm2-135m", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def reference(reference_model):
    return {name: Encoder(reference_model, config=cfg, **kw).encode(SENTENCES, show_progress_bar=False)
            for name, (cfg, kw) in LEVERS.items()}


@pytest.fixture(scope="module", params=TARGETS)
def target(request):
    device, dtype = request.param
    return device, dtype, load_model("smollm2-135m", device=device, dtype=dtype)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


@pytest.mark.parametrize("lever", sorted(LEVERS))
def test_vectors_match_fp32_cpu(reference, target, lever):
    device, dtype, loaded = target
    cfg, overrides = LEVERS[lever]
    encoder = Encoder(loaded, config=cfg, device=device, dtype=dtype, **overrides)
    assert str(encoder.loaded.model.dtype) == f"torch.{dtype}"
    vectors = encoder.encode(SENTENCES, show_progress_bar=False)
    assert vectors.dtype == np.float32 and np.isfinite(vectors).all()
    cos = cosines(vectors, reference[lever])
    assert cos.min() >= MIN_COSINE[dtype], f"{lever} on {device} {dtype}: cosines {np.round(cos, 5)}"
    # and the vectors still rank like the reference: bf16 noise is far below the sentences' differences
    sims, ref_sims = cosines(vectors[:-1], vectors[1:]), cosines(reference[lever][:-1], reference[lever][1:])
    np.testing.assert_allclose(sims, ref_sims, atol=0.02)


@pytest.mark.parametrize("lever", ["tp", "attention-sum-demo"])
def test_bf16_batch_equals_one_by_one(target, lever):
    """Batching (padding, a shared prefix) does not move bf16 vectors beyond bf16 noise either."""
    device, dtype, loaded = target
    cfg, overrides = LEVERS[lever]
    encoder = Encoder(loaded, config=cfg, device=device, dtype=dtype, **overrides)
    batched = encoder.encode(SENTENCES, batch_size=8, show_progress_bar=False)
    alone = np.stack([encoder.encode([s], show_progress_bar=False)[0] for s in SENTENCES])
    assert cosines(batched, alone).min() >= MIN_COSINE[dtype]
