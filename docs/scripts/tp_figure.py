"""Draw the Token Prepending figure of the docs (docs/assets/tp.png).

    python docs/scripts/tp_figure.py            # writes docs/assets/tp.png

A schematic of one prompt going through a small decoder (8 layers): the prompt's tokens, the
``<PST>`` slot, the last token's state copied into ``<PST>`` before each decoder layer in
[start, exit), and the embedding read at the last token from ``hidden_states[output_layer]``, with
the layers above it never run (early exit). Rows are HF ``hidden_states`` indices; row i is also the
input of decoder layer i, so the figure shows both layer numberings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

TOKENS = ["This", "sentence", ":", "<PST>", '"A', "man", "plays", "guitar", '."', "means", "in", "one", "word", ':"']
PST = TOKENS.index("<PST>")
LAST = len(TOKENS) - 1
NUM_LAYERS = 8  # decoder layers 0..7; hidden_states 0..8
START, EXIT = 1, 4  # TP before decoder layers [1, 4)
OUTPUT = 6  # hidden_states index read (an early exit: layers 6 and 7 never run)

SENTENCE = range(TOKENS.index('"A'), TOKENS.index('."') + 1)
X_STEP = 1.9  # horizontal units per token


def x(t: float) -> float:
    """Horizontal position of token position t."""
    return t * X_STEP


COLOURS = {"prompt": "#e8eaf6", "sentence": "#fff3e0", "pst": "#c62828", "last": "#283593", "copy": "#c62828"}


def draw(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(16, 10.5), dpi=150)
    y_step = 1.0
    top = NUM_LAYERS  # row index of hidden_states[L]

    # decoder layers as bands between rows: layer i turns hidden_states[i] into hidden_states[i + 1]
    for i in range(NUM_LAYERS):
        ran = i < OUTPUT
        in_tp = START <= i < EXIT
        colour = "#ffebee" if in_tp else ("#f5f5f5" if ran else "#fafafa")
        ax.add_patch(
            FancyBboxPatch((x(-0.55), i * y_step + 0.18), x(LAST + 1.1), 0.64, boxstyle="round,pad=0.02,rounding_size=0.12",
                           facecolor=colour, edgecolor="#bdbdbd" if ran else "#e0e0e0", linewidth=0.8,
                           linestyle="-" if ran else "--", zorder=0)
        )
        label = f"decoder layer {i}"
        if in_tp:
            label += "  (TP)"
        if not ran:
            label += "  (not run)"
        ax.text(x(LAST + 0.8), i * y_step + 0.5, label, va="center", ha="left", fontsize=15.2,
                color="#b71c1c" if in_tp else ("#424242" if ran else "#9e9e9e"))

    # token states: one dot per token per hidden_states row (only rows that are computed)
    for k in range(top + 1):
        computed = k <= OUTPUT
        for t in range(len(TOKENS)):
            if t == PST:
                colour = COLOURS["pst"]
            elif t == LAST:
                colour = COLOURS["last"]
            else:
                colour = "#9e9e9e"
            ax.plot(x(t), k * y_step, "o", ms=6, color=colour if computed else "#e0e0e0", zorder=3)
        ax.text(x(-0.8), k * y_step, f"hidden_states[{k}]" + ("  = embeddings" if k == 0 else "")
                + ("  = final normed" if k == top else ""),
                ha="right", va="center", fontsize=15.2, color="#212121" if computed else "#9e9e9e")

    # the TP copies: before layer i in [start, exit), <PST>'s input := the last token's input
    for i in range(START, EXIT):
        arrow = FancyArrowPatch((x(LAST), i * y_step), (x(PST), i * y_step),
                                connectionstyle="arc3,rad=0.18", arrowstyle="-|>", mutation_scale=14,
                                color=COLOURS["copy"], linewidth=1.6, zorder=4)
        ax.add_patch(arrow)
    ax.annotate("", xy=(x(0), -2.45), xytext=(x(1.2), -2.45),
                arrowprops=dict(arrowstyle="-|>", color=COLOURS["copy"], lw=1.6))
    ax.text(x(1.5), -2.45, "TP: before each decoder layer i in [start, exit) runs, <PST>'s state := the last "
            "token's state\n(both are that layer's input, hidden_states[i])", ha="left", va="center", fontsize=16,
            color=COLOURS["copy"])

    # the output: the last token at hidden_states[output_layer]
    ax.plot(x(LAST), OUTPUT * y_step, "s", ms=13, mfc="none", mec=COLOURS["last"], mew=2, zorder=5)
    ax.annotate("embedding = last token's state\nat hidden_states[output_layer]\n(the forward stops here)",
                xy=(x(LAST), OUTPUT * y_step), xytext=(x(LAST - 5.0), OUTPUT + 1.3),
                fontsize=16, color=COLOURS["last"], ha="left", zorder=6,
                bbox=dict(boxstyle="round,pad=0.3", facecolor="white", edgecolor=COLOURS["last"], linewidth=0.8),
                arrowprops=dict(arrowstyle="-|>", color=COLOURS["last"], lw=1.4))

    # the prompt's tokens along the bottom
    for t, token in enumerate(TOKENS):
        if t == PST:
            face, edge, colour = "#ffcdd2", COLOURS["pst"], COLOURS["pst"]
        elif t in SENTENCE:
            face, edge, colour = COLOURS["sentence"], "#ef6c00", "#212121"
        else:
            face, edge, colour = COLOURS["prompt"], "#5c6bc0", "#212121"
        if t == LAST:
            edge, colour = COLOURS["last"], COLOURS["last"]
        ax.add_patch(FancyBboxPatch((x(t - 0.45), -1.35), x(0.9), 0.55, boxstyle="round,pad=0.02,rounding_size=0.1",
                                    facecolor=face, edgecolor=edge, linewidth=1.2, zorder=2))
        ax.text(x(t), -1.075, token, ha="center", va="center", fontsize=14 if len(token) <= 4 else (11.5 if len(token) <= 6 else 10), color=colour,
                fontweight="bold" if t in (PST, LAST) else "normal", family="monospace")
    ax.text(x(PST), -1.75, "placeholder slot", ha="center", fontsize=14.4, color=COLOURS["pst"])
    ax.text(x((SENTENCE[0] + SENTENCE[-1]) / 2), -1.75, "the sentence", ha="center", fontsize=14.4, color="#ef6c00")
    ax.text(x(LAST), -1.75, "last token", ha="center", fontsize=14.4, color=COLOURS["last"])
    ax.text(x(-0.8), -1.075, "prompt tokens", ha="right", va="center", fontsize=15.2, color="#212121")

    ax.set_title(f"Token Prepending: TP [start, exit) = [{START}, {EXIT}), output_layer = {OUTPUT}, "
                 f"a model with L = {NUM_LAYERS} decoder layers", fontsize=19.5, pad=12)
    ax.set_xlim(x(-0.8) - 6.2, x(LAST + 0.8) + 6.0)
    ax.set_ylim(-2.9, top + 0.6)
    ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "assets" / "tp.png")
    args = parser.parse_args()
    draw(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
