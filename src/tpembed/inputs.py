"""From sentences to model inputs: prompt tokenization, sentence-only truncation, left padding."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from .prompts import PLACEHOLDER_TOKEN, render


@dataclass(frozen=True)
class PromptTokens:
    """Token ids of one rendered prompt and the position of <PST> in them (None: vanilla)."""

    ids: tuple[int, ...]
    pst_index: int | None


class PromptTokenizer:
    """Tokenizes prompts exactly as written, protecting user text from becoming special tokens.

    The whole prompt string is tokenized at once, as the paper does, so the ids are the ones its
    code produces. Only when a sentence itself contains the text of a special token (say a literal
    "<PST>" or "<s>") is the sentence part tokenized on its own with special tokens split, so that
    the user's text stays text and never becomes a placeholder.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, pst_token_id: int | None, max_length: int):
        self.tokenizer = tokenizer
        self.pst_token_id = pst_token_id
        self.max_length = max_length
        self._specials: frozenset[str] = frozenset()
        self._special_text: re.Pattern[str] | None = None

    def _special_pattern(self) -> re.Pattern[str]:
        """Texts that must stay text, read from the tokenizer now, not at construction: another
        Encoder may have added <PST> to this shared tokenizer since. <PST> itself is always in the
        list, so a sentence holding it is tokenized the same way before and after that happens."""
        tok = self.tokenizer
        specials = frozenset(
            {t.content for t in tok.added_tokens_decoder.values() if t.special and t.content}
            | {t for t in tok.all_special_tokens if t}
            | {PLACEHOLDER_TOKEN}
        )
        if specials != self._specials or self._special_text is None:
            ordered = sorted(specials, key=len, reverse=True)
            self._special_text = re.compile("|".join(map(re.escape, ordered)))
            self._specials = specials
        return self._special_text

    def __call__(self, template: str, sentences: list[str]) -> list[PromptTokens]:
        """Tokenize one template filled with each sentence; truncate the sentence (never the
        prompt) to fit max_length."""
        use_pst = self.pst_token_id is not None
        self._special_pattern()  # refresh once per call
        plain = [i for i, s in enumerate(sentences) if not self._has_special_text(s)]
        all_ids: list[list[int]] = [[] for _ in sentences]
        texts = [render(template, sentences[i], use_placeholder=use_pst).text for i in plain]
        for i, ids in zip(plain, self.tokenizer(texts, add_special_tokens=True)["input_ids"] if texts else []):
            all_ids[i] = ids
        for i in set(range(len(sentences))) - set(plain):
            all_ids[i] = self._tokenize(template, sentences[i], use_pst)
        result = []
        for sentence, ids in zip(sentences, all_ids):
            if len(ids) > self.max_length:
                ids = self._truncate(template, sentence, use_pst, len(ids))
            result.append(PromptTokens(tuple(ids), self._find_pst(ids) if use_pst else None))
        return result

    def _has_special_text(self, sentence: str) -> bool:
        pattern = self._special_text or self._special_pattern()
        return pattern.search(sentence) is not None

    def _tokenize(self, template: str, sentence: str, use_pst: bool) -> list[int]:
        prompt = render(template, sentence, use_placeholder=use_pst)
        tok = self.tokenizer
        if not self._has_special_text(sentence):
            return tok(prompt.text, add_special_tokens=True)["input_ids"]
        head = tok(prompt.text[: prompt.sentence_start], add_special_tokens=True)["input_ids"]
        rest = tok(prompt.text[prompt.sentence_start :], add_special_tokens=False, split_special_tokens=True)
        return head + rest["input_ids"]

    def _truncate(self, template: str, sentence: str, use_pst: bool, n_tokens: int) -> list[int]:
        enc = self.tokenizer(sentence, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        keep = len(offsets) - (n_tokens - self.max_length)
        while keep > 0:
            ids = self._tokenize(template, sentence[: offsets[keep - 1][1]], use_pst)
            if len(ids) <= self.max_length:
                warnings.warn(
                    f"a sentence of {len(offsets)} tokens was truncated to {keep} tokens to fit "
                    f"max_length={self.max_length} (the prompt around it is kept whole)",
                    stacklevel=4,
                )
                return ids
            keep -= 1
        overhead = len(self._tokenize(template, "", use_pst))
        raise ValueError(
            f"max_length={self.max_length} is too small: the prompt alone takes {overhead} tokens"
        )

    def _find_pst(self, ids: list[int]) -> int:
        count = ids.count(self.pst_token_id)
        if count != 1:
            raise ValueError(f"expected exactly one <PST> token in the prompt, found {count}")
        return ids.index(self.pst_token_id)


@dataclass
class Batch:
    """A left-padded batch. Every row's last real token sits at position -1.

    With a cached prefix of ``P`` tokens, ``input_ids`` / ``position_ids`` / ``pst_index`` cover
    the suffix only while ``attention_mask`` covers prefix + suffix (what the model attends over).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    pst_index: torch.Tensor | None


def collate(prompts: list[PromptTokens], pad_token_id: int, prefix_len: int = 0) -> Batch:
    """Left-pad prompts; positions count real tokens only, so padding never shifts them.

    ``prefix_len > 0``: the first ``prefix_len`` ids of every row are shared and already cached, so
    only the suffixes are padded and returned as inputs; their positions continue after the prefix.
    """
    if any(len(p.ids) <= prefix_len for p in prompts):
        raise ValueError(f"prefix_len={prefix_len} must leave at least one token in every row")
    suffixes = [p.ids[prefix_len:] for p in prompts]
    width = max(len(s) for s in suffixes)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    suffix_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, suffix in enumerate(suffixes):
        input_ids[row, width - len(suffix) :] = torch.tensor(suffix, dtype=torch.long)
        suffix_mask[row, width - len(suffix) :] = 1
    attention_mask = torch.cat([torch.ones((len(prompts), prefix_len), dtype=torch.long), suffix_mask], dim=1)
    # positions over prefix + suffix, counting real tokens; the model only sees the suffix part
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, prefix_len:]
    pst_index = None
    if prompts[0].pst_index is not None:
        if any(p.pst_index < prefix_len for p in prompts):  # type: ignore[operator]
            raise ValueError("the cached prefix must end at or before <PST> (TP rewrites <PST>)")
        pst_index = torch.tensor(
            [width - len(s) + p.pst_index - prefix_len for p, s in zip(prompts, suffixes)],  # type: ignore[operator]
            dtype=torch.long,
        )
    return Batch(input_ids, attention_mask, position_ids, pst_index)


def plan_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None = None) -> list[list[int]]:
    """Split row indices into length-sorted batches (longest first).

    A batch holds at most ``batch_size`` rows and, when ``max_batch_tokens`` is set, at most that
    many rows x padded width (its longest row); a single row longer than the budget forms its own
    batch. Sorting keeps padding small; the budget keeps activation memory bounded.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if max_batch_tokens is not None and max_batch_tokens <= 0:
        raise ValueError(f"max_batch_tokens must be positive, got {max_batch_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches:
            current = batches[-1]
            width = lengths[current[0]]  # rows come longest first, so the first row sets the width
            fits = max_batch_tokens is None or (len(current) + 1) * width <= max_batch_tokens
            if len(current) < batch_size and fits:
                current.append(i)
                continue
        batches.append([i])
    return batches
