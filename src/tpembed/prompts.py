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

from collections.abc import Sequence
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


#: Demonstrations for PromptEOL-style prompts (in-context learning, arXiv 2307.16645): a sentence and
#: the one word that sums it up. Written for tpembed across genres (image captions, news and
#: headlines, forum questions, dictionary definitions, reviews, everyday and science statements);
#: none is taken from STS or SICK data (``tests/test_demonstrations.py`` checks every SentEval
#: sentence). Which ones help is chosen on STS-B dev (``tpembed search --demos``).
DEMONSTRATIONS: dict[str, tuple[str, str]] = {
    # captions
    "jockey": ("A jockey is riding a horse in a race.", "Racing"),
    "chef": ("A chef is chopping vegetables in a busy kitchen.", "Cooking"),
    "surfer": ("A surfer rides a large wave near the rocky shore.", "Surfing"),
    "kitten": ("A small kitten is sleeping on a pile of laundry.", "Cat"),
    "violin": ("A girl is practising the violin in her bedroom.", "Music"),
    "tractor": ("An old tractor is pulling a plough across a muddy field.", "Farming"),
    "skiers": ("Two skiers are racing down a snowy slope.", "Skiing"),
    "bus": ("Passengers are waiting for a bus in the rain.", "Commute"),
    # news and headlines
    "storm": ("Heavy rain and strong winds knocked out power across the city.", "Storm"),
    "market": ("Shares dropped after the company reported lower profits.", "Stocks"),
    "election": ("Voters in the northern province go to the polls on Sunday.", "Election"),
    "vaccine": ("Health officials approve a new vaccine for seasonal flu.", "Medicine"),
    "earthquake": ("A strong earthquake shook the coastal town early this morning.", "Earthquake"),
    "strike": ("Rail workers walk out over pay, halting trains nationwide.", "Strike"),
    "bribery": ("The court sentenced the former mayor to five years for bribery.", "Corruption"),
    "satellite": ("The space agency launched a weather satellite from its island base.", "Space"),
    "trade": ("The two countries signed a trade agreement after months of talks.", "Trade"),
    "wildfire": ("Firefighters battled a forest blaze that forced hundreds to flee.", "Wildfire"),
    # forum questions
    "battery": ("My laptop battery drains within an hour, how can I fix it?", "Battery"),
    "baking": ("What can I use instead of eggs when baking a cake?", "Baking"),
    "visa": ("Do I need a visa to work abroad for six months?", "Visa"),
    "tomatoes": ("Why are the leaves on my tomato plants turning yellow?", "Gardening"),
    "sorting": ("How do I sort a list of dictionaries by one key in Python?", "Programming"),
    # definitions
    "thermometer": ("an instrument for measuring the temperature of the air or of a body", "Thermometer"),
    "drought": ("a long period with little or no rain", "Drought"),
    "librarian": ("a person who looks after a collection of books", "Librarian"),
    "bridge": ("a structure that carries a road over a river", "Bridge"),
    # reviews
    "film": ("The film was far too long and the jokes fell flat.", "Boring"),
    "hotel": ("The staff were friendly and the room was spotless.", "Pleasant"),
    # everyday and science statements
    "homework": ("The teacher asked the students to hand in their essays by Friday.", "Homework"),
    "marathon": ("Thousands of runners crossed the finish line of the city marathon.", "Marathon"),
    "wedding": ("The couple exchanged rings in front of their families.", "Wedding"),
    "recycling": ("Residents must now sort plastic, paper and glass into separate bins.", "Recycling"),
    "delay": ("Our flight was delayed by three hours because of fog.", "Delay"),
    "photosynthesis": ("Plants turn sunlight, water and carbon dioxide into sugar.", "Photosynthesis"),
    "volcano": ("Lava poured down the mountainside after the eruption.", "Volcano"),
}

#: One demonstration (a built-in name or ``"SENTENCE => WORD"``), or several in order (k-shot).
Demonstration = str | Sequence[str]


def demonstration_shots(demonstration: Demonstration) -> list[str]:
    """The shots of a demonstration setting, in order: ``"storm"`` -> ``["storm"]``; ``"storm+jockey"``
    (built-in names joined by ``+``) or ``["storm", "jockey"]`` -> both (k-shot)."""
    if isinstance(demonstration, str):
        if "=>" not in demonstration and "+" in demonstration:
            return [part.strip() for part in demonstration.split("+")]
        return [demonstration]
    shots = list(demonstration)
    if not shots or not all(isinstance(shot, str) for shot in shots):
        raise ValueError(f"a k-shot demonstration is a non-empty list of demonstrations, got {demonstration!r}")
    return shots


def demonstration_text(demonstration: Demonstration) -> str:
    """A demonstration as the CLI spells it: ``storm``, ``storm+jockey`` (k-shot)."""
    return "+".join(demonstration_shots(demonstration))


def _shot_prefix(shot: str) -> str:
    if shot in DEMONSTRATIONS:
        sentence, word = DEMONSTRATIONS[shot]
    else:
        sentence, sep, word = shot.partition("=>")
        sentence, word = sentence.strip(), word.strip()
        if not sep or not sentence or not word:
            raise ValueError(
                f"a demonstration is one of the built-in names ({', '.join(sorted(DEMONSTRATIONS))}) or "
                f"'SENTENCE => WORD', got {shot!r}"
            )
    if "{" in sentence + word or "}" in sentence + word:
        raise ValueError(f"a demonstration may not contain braces: {shot!r}")
    return f'This sentence : "{normalize_sentence(sentence)}" means in one word:"{word}". '


def demonstration_prefix(demonstration: Demonstration) -> str:
    """The text put before every template: one solved example per shot, in order."""
    return "".join(_shot_prefix(shot) for shot in demonstration_shots(demonstration))


def with_demonstration(method: PromptMethod, demonstration: Demonstration | None) -> PromptMethod:
    """``method`` with the demonstration (one or k shots) before each template (unchanged when None)."""
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
