"""Prompt methods as data, with the paper's exact wording.

A template has a ``{sentence}`` slot and, for Token Prepending, a ``{placeholder}`` slot.
``{placeholder}`` renders as ``"<PST> "`` (the token plus the space the paper writes after it)
under TP and as ``""`` under the vanilla plan, so one template gives both of the paper's
strings character for character, e.g.::

    This sentence : {placeholder}"{sentence}" means in one word:"
    vanilla -> This sentence : "a cat ." means in one word:"
    tp      -> This sentence : <PST> "a cat ." means in one word:"
"""

from __future__ import annotations

from dataclasses import dataclass

PLACEHOLDER_TOKEN = "<PST>"
SENTENCE_SLOT = "{sentence}"
PLACEHOLDER_SLOT = "{placeholder}"

_EOL = '"{sentence}" means in one word:"'
_THIS_SENTENCE = "this sentence : {placeholder}"

_METAEOL_TASKS = (
    "In this task, you're presented with a text excerpt. Your task is to categorize the excerpt "
    "into a broad category such as 'Education', 'Technology', 'Health', 'Business', "
    "'Environment', 'Politics', or 'Culture'. These categories help in organizing content for "
    "better accessibility and targeting. For this task, " + _THIS_SENTENCE
    + '"{sentence}" should be classified under one general category in one word:"',
    "In this task, you're given a statement and you need to determine whether it's presenting an "
    "'Opinion' or a 'Fact'. This distinction is vital for information verification, educational "
    "purposes, and content analysis. For this task, " + _THIS_SENTENCE
    + '"{sentence}" discriminates between opinion and fact in one word:"',
    "In this task, you're given a review from an online platform. Your task is to generate a "
    "rating for the product based on the review on a scale of 1-5, where 1 means 'extremely "
    "negative' and 5 means 'extremely positive'. For this task, " + _THIS_SENTENCE
    + '"{sentence}" reflects the sentiment in one word:"',
    "In this task, you're reading a personal diary entry. Your task is to identify the "
    "predominant emotion expressed, such as joy, sadness, anger, fear, or love. For this task, "
    + _THIS_SENTENCE + '"{sentence}" conveys the emotion in one word:"',
    "In this task, you're presented with two sentences. Your task is to assess whether the "
    "sentences convey the same meaning. Use 'identical', 'similar', 'different', or 'unrelated' "
    "to describe the relationship. To enhance the performance of this task, " + _THIS_SENTENCE
    + _EOL,
    "In this task, you're given a sentence and a phrase. Your task is to determine if the phrase "
    "can be a contextual synonym within the given sentence. Options include 'yes', 'no', or "
    "'partially'. To enhance the performance of this task, " + _THIS_SENTENCE + _EOL,
    "In this task, you're examining a news article. Your task is to extract the most critical "
    "fact from the article. For this task, " + _THIS_SENTENCE
    + '"{sentence}" encapsulates the key fact in one word:"',
    "In this task, you're reviewing a scientific abstract. Your task is to identify the main "
    "entities (e.g., proteins, diseases) and their relations (e.g., causes, treats). For this "
    "task, " + _THIS_SENTENCE + '"{sentence}" highlights the primary entity or relation in one word:"',
)


@dataclass(frozen=True)
class PromptMethod:
    """A named prompt method: one or more templates whose embeddings are averaged."""

    name: str
    templates: tuple[str, ...]
    description: str = ""


PROMPTS: dict[str, PromptMethod] = {
    "prompteol": PromptMethod(
        "prompteol", ("This sentence : {placeholder}" + _EOL,), "PromptEOL (Jiang et al., 2023)"
    ),
    "metaeol": PromptMethod(
        "metaeol", _METAEOL_TASKS, "MetaEOL: 8 task prompts, embeddings averaged (Lei et al., 2024)"
    ),
    "cot": PromptMethod(
        "cot",
        ("After thinking step by step , this sentence : {placeholder}" + _EOL,),
        "Pretended Chain of Thought (Zhang et al., 2024)",
    ),
    "ke": PromptMethod(
        "ke",
        (
            "The essence of a sentence is often captured by its main subjects and actions, while "
            "descriptive terms provide additional but less central details. With this in mind , "
            "this sentence : {placeholder}" + _EOL,
        ),
        "Knowledge Enhancement (Zhang et al., 2024)",
    ),
}


#: One-shot demonstrations for PromptEOL-style prompts (arXiv 2307.16645's in-context learning):
#: a sentence and the one word that sums it up. Written for tpembed (not taken from any STS data);
#: which one helps is chosen on STS-B dev (``tpembed search --demos``).
DEMONSTRATIONS: dict[str, tuple[str, str]] = {
    "jockey": ("A jockey is riding a horse in a race.", "Racing"),
    "chef": ("A chef is chopping vegetables in a busy kitchen.", "Cooking"),
    "storm": ("Heavy rain and strong winds knocked out power across the city.", "Storm"),
    "market": ("Shares dropped after the company reported lower profits.", "Stocks"),
}


def demonstration_prefix(demonstration: str) -> str:
    """The text put before every template: a built-in name or ``"SENTENCE => WORD"``."""
    if demonstration in DEMONSTRATIONS:
        sentence, word = DEMONSTRATIONS[demonstration]
    else:
        sentence, sep, word = demonstration.partition("=>")
        sentence, word = sentence.strip(), word.strip()
        if not sep or not sentence or not word:
            raise ValueError(
                f"demonstration must be one of {sorted(DEMONSTRATIONS)} or 'SENTENCE => WORD', got {demonstration!r}"
            )
    if "{" in sentence + word or "}" in sentence + word:
        raise ValueError(f"a demonstration may not contain braces: {demonstration!r}")
    return f'This sentence : "{normalize_sentence(sentence)}" means in one word:"{word}". '


def with_demonstration(method: PromptMethod, demonstration: str | None) -> PromptMethod:
    """``method`` with a one-shot demonstration before each template (unchanged when None)."""
    if demonstration is None:
        return method
    prefix = demonstration_prefix(demonstration)
    return PromptMethod(method.name, tuple(prefix + t for t in method.templates), method.description)


def custom_prompt(template: str, *, use_placeholder: bool) -> PromptMethod:
    """Validate a user template and wrap it as a one-template PromptMethod."""
    if template.count(SENTENCE_SLOT) != 1:
        raise ValueError(f"a template needs exactly one {SENTENCE_SLOT} slot, got: {template!r}")
    n_slots = template.count(PLACEHOLDER_SLOT)
    if n_slots > 1:
        raise ValueError(f"a template may hold at most one {PLACEHOLDER_SLOT} slot: {template!r}")
    if use_placeholder and n_slots == 0:
        raise ValueError(
            f"Token Prepending needs a {PLACEHOLDER_SLOT} slot in the template (it renders as "
            f"'{PLACEHOLDER_TOKEN} '), e.g. 'This sentence : {PLACEHOLDER_SLOT}\"{SENTENCE_SLOT}\"'"
        )
    if template.index(SENTENCE_SLOT) < template.find(PLACEHOLDER_SLOT):
        raise ValueError(f"{PLACEHOLDER_SLOT} must come before {SENTENCE_SLOT}: {template!r}")
    return PromptMethod("custom", (template,), "user template")


def get_prompt_method(name: str, template: str | None = None, *, use_placeholder: bool) -> PromptMethod:
    """Return the named built-in method, or the user's template when one is given."""
    if template is not None:
        return custom_prompt(template, use_placeholder=use_placeholder)
    try:
        return PROMPTS[name]
    except KeyError:
        raise ValueError(f"unknown prompt_method {name!r}; choose one of {sorted(PROMPTS)}") from None


def normalize_sentence(sentence: str) -> str:
    """The paper's (PromptEOL's) sentence clean-up, in its order.

    Append '.' unless the sentence ends in one of .?"' ; replace " by ' (the prompt quotes the
    sentence with "); a final '?' becomes '.'.
    """
    if sentence and sentence[-1] not in ".?\"'":
        sentence += "."
    sentence = sentence.replace('"', "'")
    if sentence and sentence[-1] == "?":
        sentence = sentence[:-1] + "."
    return sentence


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt string and where the sentence sits in it (character offsets)."""

    text: str
    sentence_start: int
    sentence_end: int


def render(template: str, sentence: str, *, use_placeholder: bool) -> RenderedPrompt:
    """Fill a template's slots. Plain replacement, so other braces in a template stay as written."""
    placeholder = PLACEHOLDER_TOKEN + " " if use_placeholder else ""
    head, tail = template.split(SENTENCE_SLOT)
    head = head.replace(PLACEHOLDER_SLOT, placeholder)
    tail = tail.replace(PLACEHOLDER_SLOT, placeholder)
    return RenderedPrompt(head + sentence + tail, len(head), len(head) + len(sentence))
