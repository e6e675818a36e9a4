"""The torch-free tokenizer gives open_clip's token ids, string for string."""
# ruff: noqa: RUF001  (look-alike characters are what this test is about)

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import open_clip
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from open_clip.tokenizer import default_bpe

from clipsearch.model.labels import DEFAULT_LABELS
from clipsearch.model.tokenizer import CACHED_WORD_CHARS, ClipTokenizer, merge_pairs

ROOT = Path(__file__).resolve().parents[2]

ALPHABETS = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    " \t\n\r\u00a0\u2003",
    "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßÀÉÎÕÜ",
    "абвгдежзийклмнопрстуфхцчшщъыьэюяЖЩ",
    "αβγδεζηθικλμνξοπρστυφχψωΩ",
    "写真犬猫海山夜空東京日本語のをはが",
    "한국어사진",
    "العربيةصورة",
    "😀🐶🏖️🌅👨‍👩‍👧🇯🇵✨",
    "\u0301\u0308\u200d\ufe0f",
)
PIECES = (
    "it's", "they'll", "we've", "I'M", "you'd", "don't", "&amp;", "&lt;b&gt;", "&amp;amp;", "cafÃ©", "â€™",
    "<start_of_text>", "<END_OF_TEXT>", "t-shirt", "3.14", "2021-07-14", "e-mail", "A.I.", "...", "ﬁ", "Ｗｉｄｅ",
)  # fmt: skip


def varied_strings(count: int, seed: int = 7) -> list[str]:
    """Random mixes of scripts, emoji, HTML entities, mojibake, contractions and special tokens, of every length
    from empty to far over the 77-token context."""
    rng = random.Random(seed)
    strings = []
    for _ in range(count):
        words = []
        for _ in range(rng.choice([0, 1, 2, 3, 5, 8, 13, 40, 90])):
            if rng.random() < 0.2:
                words.append(rng.choice(PIECES))
            else:
                alphabet = "".join(rng.sample(ALPHABETS, rng.randint(1, 3)))
                words.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))))
        strings.append(rng.choice([" ", "  ", "", "\n"]).join(words))
    return strings


def corpus() -> list[str]:
    lines = (ROOT / "photos" / "LICENSES.tsv").read_text(encoding="utf-8").splitlines()
    cells = [cell for line in lines for cell in line.split("\t")]
    return [*cells, *DEFAULT_LABELS, "", " ", "a photo of a cat.", "word " * 100, "🐶" * 80]


# Built once for the module: hypothesis tests cannot take function-scoped fixtures.
TOKENIZERS = ClipTokenizer(Path(default_bpe())), open_clip.get_tokenizer("ViT-B-32")


@pytest.fixture(scope="module")
def tokenizers() -> tuple[ClipTokenizer, open_clip.tokenizer.SimpleTokenizer]:
    return TOKENIZERS


def test_same_tokens_as_open_clip_on_thousands_of_strings(tokenizers) -> None:
    ours, theirs = tokenizers
    texts = corpus() + varied_strings(3000)
    expected = theirs(texts).numpy()
    got = ours.padded(texts)
    differing = [texts[i] for i in np.flatnonzero((got != expected).any(axis=1))]
    assert not differing, f"{len(differing)} of {len(texts)} strings tokenized differently, e.g. {differing[:3]!r}"
    assert (got[:, -1] != 0).sum() > 100  # many strings were cut to the 77-token context


def test_rows_are_unpadded_and_end_with_end_of_text(tokenizers) -> None:
    ours, _ = tokenizers
    rows = ours(["a dog", "", "word " * 100])
    assert [len(row) for row in rows] == [4, 2, 77]
    assert all(row[0] == ours.start and row[-1] == ours.end for row in rows)


def long_words(count: int, seed: int = 11) -> list[str]:
    """Single words of hundreds to thousands of letters (one regex match each: BPE sees them whole), some
    with a short text before or after."""
    rng = random.Random(seed)
    words = []
    for _ in range(count):
        alphabet = rng.choice([ALPHABETS[0], "ab", "aeiou", ALPHABETS[5], "xyz"])
        word = "".join(rng.choice(alphabet) for _ in range(rng.choice([80, 300, 1500])))
        words.append(rng.choice(["{}", "a photo of {}", "{} at night"]).format(word))
    return words


def test_same_tokens_as_open_clip_on_long_words(tokenizers) -> None:
    ours, theirs = tokenizers
    texts = long_words(40)
    differing = [text[:40] for text, row in zip(texts, theirs(texts).numpy(), strict=True)
                 if not np.array_equal(ours.padded([text])[0], row)]  # fmt: skip
    assert not differing, differing
    assert ours.encode(texts[0]) == theirs.encode(texts[0])  # the whole text, not cut to the context


@pytest.mark.parametrize(
    "text",
    [
        "".join(random.Random(5).choice("abcdefghijklmnopqrstuvwxyz") for _ in range(20_000)),  # one word
        "dog " * 50_000,  # words far beyond the context
        "😀" * 20_000,
    ],
    ids=["20k-letter-word", "50k-words", "20k-emoji"],
)
def test_a_long_text_costs_a_bounded_cpu_time(tokenizers, text: str) -> None:
    ours, _ = tokenizers
    ours.cache.clear()
    [row] = ours([text])
    assert len(row) == ours.context_length and row[-1] == ours.end
    assert max(map(len, ours.cache), default=0) <= CACHED_WORD_CHARS, "a long word is not kept in the memo"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.one_of(
        st.text(max_size=200),
        st.builds(lambda unit, n: unit * n, st.text(min_size=1, max_size=3), st.integers(1, 30_000)),
    )
)
def test_any_text_gives_open_clips_ids_within_budget(text: str) -> None:
    ours, theirs = TOKENIZERS
    [row] = ours([text])
    assert len(row) <= ours.context_length and row[0] == ours.start and row[-1] == ours.end
    if len(text) <= 200:  # open_clip's own merge is quadratic: compared on short texts only
        assert ours.padded([text])[0].tolist() == theirs([text])[0].tolist()


class CountedRanks(dict[tuple[str, ...], int]):
    """Merge ranks that count how often they are looked up: the merge's work, whatever the machine's speed."""

    lookups = 0

    def get(self, key, default=None):  # type: ignore[no-untyped-def, override]
        self.lookups += 1
        return super().get(key, default)


@pytest.mark.parametrize("unit", ["ab", "a", "xyz", "th"])
def test_merging_a_long_word_is_linear_in_lookups(tokenizers, unit: str) -> None:
    """The quadratic merge looked up every pair after each merge: n squared lookups for a word of n symbols."""
    ours, _ = tokenizers
    for n in (1_000, 8_000):
        ranks = CountedRanks(ours.ranks)
        symbols = list(unit * (n // len(unit)))
        merge_pairs(symbols, ranks)
        assert ranks.lookups <= 10 * len(symbols), (unit, n, ranks.lookups)
