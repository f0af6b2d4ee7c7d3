"""Thread safety: any number of threads and Encoders on one loaded model get what they get alone."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import make_model, make_tokenizer

from tpembed import Encoder
from tpembed.models import prepare_model

SENTENCES = [
    "a man is playing a guitar .",
    "the cat sat on the mat and looked at the dog while two children ran .",
    "hi",
    "what is the capital of france ?",
    "stocks fell sharply on tuesday after the report .",
    "a woman is slicing an onion .",
    "two children are running through a field of flowers .",
    "he typed <PST> here .",
]

# (settings, batch size): vanilla, two TP ranges, other <PST> seeds / init, layers and prompts.
JOBS = [
    (dict(use_which_plan="vanilla", output_layer=-1), 3),
    (dict(use_which_plan="tp", tp_starting_index=1, tp_exiting_index=3, seed=1), 2),
    (dict(use_which_plan="tp", tp_starting_index=0, tp_exiting_index=2, output_layer=3, seed=2), 5),
    (dict(use_which_plan="tp", tp_starting_index=1, tp_exiting_index=4, pst_init="zeros", prefix_cache=False), 4),
    (dict(use_which_plan="vanilla", output_layer=2, prompt_method="ke"), 8),
    (dict(use_which_plan="tp", tp_starting_index=1, tp_exiting_index=2, prompt_method="cot", seed=3), 1),
]


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_threads_and_encoders_sharing_one_model_get_their_solo_vectors(family):
    loaded = prepare_model(make_model(family), make_tokenizer())
    encoders = [Encoder(loaded, **settings) for settings, _ in JOBS]
    # each job alone, in sequence, is the reference
    alone = [enc.encode(SENTENCES, batch_size=bs) for enc, (_, bs) in zip(encoders, JOBS)]

    rounds = 6
    start = threading.Barrier(len(JOBS) * 2)

    def job(i: int) -> list[np.ndarray]:
        enc, (_, bs) = encoders[i % len(JOBS)], JOBS[i % len(JOBS)]
        start.wait()
        return [enc.encode(SENTENCES, batch_size=bs) for _ in range(rounds)]

    with ThreadPoolExecutor(len(JOBS) * 2) as pool:  # two threads per encoder
        results = list(pool.map(job, range(len(JOBS) * 2)))
    for i, got in enumerate(results):
        for vectors in got:
            # same batches as alone, so the same numbers; only another call's state could change them
            np.testing.assert_allclose(vectors, alone[i % len(JOBS)], rtol=1e-5, atol=1e-6)


def test_two_encoders_built_from_one_in_memory_model_share_its_lock():
    model, tok = make_model("qwen2"), make_tokenizer()
    vanilla = Encoder(model, tokenizer=tok, use_which_plan="vanilla")
    tp = Encoder(model, tokenizer=tok, use_which_plan="tp", tp_starting_index=1, tp_exiting_index=3)
    assert vanilla.loaded is not tp.loaded and vanilla.loaded.lock is tp.loaded.lock
    alone = (vanilla.encode(SENTENCES, batch_size=2), tp.encode(SENTENCES, batch_size=3))
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(enc.encode, SENTENCES, batch_size=bs) for _ in range(4)
                   for enc, bs in ((vanilla, 2), (tp, 3))]
    for k, future in enumerate(futures):
        np.testing.assert_allclose(future.result(), alone[k % 2], rtol=1e-5, atol=1e-6)


def test_literal_pst_means_the_same_whatever_the_construction_order():
    sentences = ["he typed <PST> here .", "<PST>", "a <s> b"]
    model, tok = make_model("llama"), make_tokenizer()
    loaded = prepare_model(model, tok)
    vanilla_first = Encoder(loaded, use_which_plan="vanilla")
    before = vanilla_first.encode(sentences)
    Encoder(loaded, use_which_plan="tp", tp_exiting_index=2)  # adds <PST> to the shared tokenizer
    after = vanilla_first.encode(sentences)
    np.testing.assert_array_equal(after, before)
    # and a vanilla encoder made after the TP one agrees too
    np.testing.assert_array_equal(Encoder(loaded, use_which_plan="vanilla").encode(sentences), before)
    # the literal stays text: no <PST> id in the vanilla prompt
    pst_id = tok.convert_tokens_to_ids("<PST>")
    ids = vanilla_first._tokenize(vanilla_first.prompt.templates[0], ["he typed <PST> here ."])[0].ids
    assert pst_id not in ids
