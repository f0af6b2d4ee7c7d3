"""Shared fixtures: tiny random decoder models built from configs, and a small real tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers, decoders
from transformers import (
    Gemma2Config,
    Gemma3TextConfig,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("TPEMBED_DATA", REPO_ROOT.parent / "shared" / "senteval"))

_CORPUS = [
    "a man is playing a guitar .",
    "a woman is slicing an onion .",
    "the cat sat on the mat and looked at the dog .",
    'this sentence : "hello world ." means in one word:"',
    "stocks fell sharply on tuesday after the report .",
    "two children are running through a field of flowers .",
    "what is the capital of france ?",
] * 20


def make_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained here (GPT-2/SmolLM style) that adds a BOS token."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


_COMMON = dict(
    vocab_size=400,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)

CONFIGS = {
    "llama": lambda: LlamaConfig(**_COMMON),
    "mistral": lambda: MistralConfig(**_COMMON, sliding_window=None),
    "qwen2": lambda: Qwen2Config(**_COMMON),
    "gemma2": lambda: Gemma2Config(**_COMMON, head_dim=8),
    "gemma3": lambda: Gemma3TextConfig(**_COMMON, head_dim=8),
}


def make_model(family: str, seed: int = 0):
    """A tiny random causal LM of one family, in eval mode, fp32, eager-free default attention."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(CONFIGS[family]())
    return model.eval()


@pytest.fixture(scope="session")
def tokenizer_factory():
    return make_tokenizer


@pytest.fixture(params=sorted(CONFIGS))
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def llama():
    """A tiny random Llama (4 layers, untied lm_head) prepared in memory, one per test module."""
    from tpembed.models import prepare_model

    return prepare_model(make_model("llama"), make_tokenizer(), {"name": "tiny-llama"})


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """A tiny random Llama (4 layers) saved as an HF folder: loads in a blink, no packaged model needed."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    make_model("llama").save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


def assert_vectors_close(actual: np.ndarray, expected: np.ndarray, rel: float = 1e-4) -> None:
    """Row by row, |a - b| <= rel * |b|: float noise only (other batch sizes pad differently, and another
    thread may run torch with another OpenMP thread count, so the sums are added in another order)."""
    assert actual.shape == expected.shape
    error = np.linalg.norm(actual - expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert error.max() <= rel, f"row {error.argmax()} differs by {error.max():.2e} (relative)"
