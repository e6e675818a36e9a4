"""Zero-shot labels: which of a list of words best describes a photo, by CLIP's own softmax."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clipsearch.model.engine import TextEncoding

# What "What is in this photo?" ranks unless the user gives a list of their own.
DEFAULT_LABELS = (
    "cat", "dog", "bird", "fish", "horse", "wild animal", "person", "crowd", "child", "food", "drink",
    "car", "boat", "airplane", "building", "monument", "church", "bridge", "city street", "mountain",
    "beach", "sea", "forest", "desert", "snow", "sky", "night", "flower", "tool", "musical instrument",
    "sport", "furniture", "electronics", "planet", "text or document", "painting",
)  # fmt: skip


@dataclass(frozen=True)
class LabelScore:
    label: str
    similarity: float
    probability: float


@dataclass(frozen=True)
class LabelList:
    """Labels as a person typed them (one per line): blanks and repeats removed, and capped in number and
    length, since every label is encoded and a public page must not encode ten thousand of them. Only the
    first MAX_LABELS_TEXT characters are read: whatever a visitor sends, parsing costs no more."""

    labels: tuple[str, ...]
    left_out: int = 0  # lines beyond MAX_LABELS (in the text read)
    shortened: int = 0  # labels cut to MAX_LABEL_CHARS
    cut: bool = False  # the text went past MAX_LABELS_TEXT characters: the rest was not read

    @classmethod
    def parse(cls, text: str) -> LabelList:
        read = text[:MAX_LABELS_TEXT]
        unique = list(dict.fromkeys(line.strip() for line in read.splitlines() if line.strip()))
        kept = unique[:MAX_LABELS]
        shortened = sum(len(label) > MAX_LABEL_CHARS for label in kept)
        labels = dict.fromkeys(label[:MAX_LABEL_CHARS].strip() for label in kept)
        return cls(tuple(labels), len(unique) - len(kept), shortened, len(text) > MAX_LABELS_TEXT)


MAX_LABELS = 100
MAX_LABEL_CHARS = 60  # CLIP reads at most 77 tokens, and a label is one thing in a photo
# The most of the label text read (and the page's text box takes): MAX_LABELS full labels, their line breaks,
# and as many again for blank lines, spaces and repeats.
MAX_LABELS_TEXT = 2 * MAX_LABELS * (MAX_LABEL_CHARS + 1)
LABEL_BATCH = 64
LABEL_TEMPLATE = "a photo of {}."


def label_vectors(encoder: TextEncoding, labels: Sequence[str]) -> np.ndarray:
    """Each label's text vector, encoded in batches so that memory stays flat however long the list."""
    batches = [
        encoder.encode_text([LABEL_TEMPLATE.format(label) for label in labels[start : start + LABEL_BATCH]])
        for start in range(0, len(labels), LABEL_BATCH)
    ]
    return np.concatenate(batches) if batches else np.zeros((0, encoder.identity.dim), dtype=np.float32)


def rank_labels(
    encoder: TextEncoding,
    image_vector: np.ndarray,
    labels: Sequence[str],
    vectors: np.ndarray | None = None,
) -> list[LabelScore]:
    """Zero-shot labels for a photo, best first: CLIP's softmax over scaled cosine similarities.

    `vectors` are the labels' own (from label_vectors), for a caller that keeps them cached.
    """
    if vectors is None:
        labels = LabelList.parse("\n".join(labels)).labels
        vectors = label_vectors(encoder, labels)
    if not labels:
        return []
    similarities = vectors @ image_vector
    logits = encoder.logit_scale * similarities
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    order = np.argsort(-similarities, kind="stable")
    return [LabelScore(labels[i], float(similarities[i]), float(probabilities[i])) for i in order]
