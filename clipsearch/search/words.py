"""Words for full-text search: the words of file and folder names as the index holds them, the words of a
query matched against them, and the one ranking that fuses a text match with CLIP's.

Both engines tokenize and fold case their own way, and their query syntaxes treat punctuation differently.
So the words are made here, on both sides, by one rule: runs of letters and digits (any script), lower
case, a name also split where its case or its kind of character changes ("IMG_2041-kyotoTemple.jpg" is
img 2041 kyoto temple). The index stores them space-separated in TEXT fields made without stemming or stop
words, and a query sends only such words: nothing a visitor types reaches the query syntax, so no character
needs escaping and none can widen a match (no prefix, fuzzy or wildcard terms).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from clipsearch.search.query import parse_query

# A run of letters or digits of any script ("\w" without the underscore).
WORD = re.compile(r"[^\W_]+")
QUOTED = re.compile(r'"([^"]*)"')  # a phrase in double quotes
# Where a name's word breaks inside such a run: lower to upper case ("kyotoTemple"), an acronym before a
# word ("HDRPhoto"), letters to digits and back ("IMG2041", "2041a").
BREAK = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")
MAX_WORD_CHARS = 40  # longer runs are not words anyone types: not stored, not searched
MAX_QUERY_WORDS = 8  # a query's words matched as text; the rest go to CLIP alone
# Words too common to say anything about a photo's name or text. Matched, they would lift photos at random.
STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "if", "in", "into", "is", "it", "its",
    "no", "not", "of", "on", "or", "our", "my", "photo", "picture", "such", "that", "the", "their", "then", "there",
    "these", "they", "this", "to", "was", "will", "with",
})  # fmt: skip
# The fields that a query's words are matched against, and how a result says which one matched.
TEXT_FIELDS: Mapping[str, str] = {"text": "text", "name_words": "name", "folder_words": "folder"}
# Reciprocal rank fusion's constant: how much the first ranks count more than the next (docs/searching.md).
FUSION_K = 60


def words_of(text: str) -> list[str]:
    """The words of a text in lower case, in order, split also at changes of case and of letters to digits
    (the same rule for a name and for a query: "kyotoTemple" and "kyoto temple" are the same words)."""
    return [word for word in WORD.findall(BREAK.sub(" ", text).lower()) if len(word) <= MAX_WORD_CHARS]


def name_words(name: str) -> str:
    """The words of a file name without its extension: "IMG_2041-kyotoTemple.jpg" is "img 2041 kyoto temple"."""
    stem = PurePosixPath(name).stem if "." in name.lstrip(".") else name
    return " ".join(words_of(stem))


def folder_words(path: str) -> str:
    """The words of the folders a photo's path is in, once each: "2019/Kyoto trip/IMG_1.jpg" is
    "2019 kyoto trip"."""
    folders = PurePosixPath(path).parts[:-1]
    return " ".join(dict.fromkeys(word for folder in folders for word in words_of(folder)))


def query_words(text: str) -> tuple[str, ...]:
    """The words of a query matched as text: those of its positive terms (query arithmetic's "- people" is
    not a wish for the word), stop words left out, each once, at most MAX_QUERY_WORDS."""
    if not text.strip():
        return ()
    terms = parse_query(text, with_photos=True)
    words = (word for term in terms if term.weight > 0 for word in words_of(term.text))
    return tuple(dict.fromkeys(word for word in words if word not in STOP_WORDS))[:MAX_QUERY_WORDS]


def quoted(text: str) -> tuple[tuple[str, ...], ...]:
    """The phrases a query puts in double quotes, as words ('"exit 12" sign' has ("exit", "12")): words that
    must be written in a photo, or in its file or folder names, in this order. An unclosed quote quotes
    nothing; at most MAX_QUERY_WORDS words in all."""
    phrases = [tuple(words_of(inside)) for inside in QUOTED.findall(text)]
    kept: list[tuple[str, ...]] = []
    for phrase in (phrase for phrase in phrases if phrase):
        if sum(map(len, kept)) + len(phrase) > MAX_QUERY_WORDS:
            break
        kept.append(phrase)
    return tuple(dict.fromkeys(kept))


def phrase_clause(phrase: Sequence[str]) -> str:
    """A query clause for photos with the words of `phrase`, one after the other, in one of the text fields."""
    _check_words(phrase)
    written = '"' + " ".join(phrase) + '"'
    return "(" + " | ".join(f"@{field}:{written}" for field in TEXT_FIELDS) + ")"


def any_clause(words: Sequence[str]) -> str:
    """A query clause for photos with at least one of the words in one of the text fields."""
    _check_words(words)
    return "(" + " | ".join(f"@{field}:{word}" for word in words for field in TEXT_FIELDS) + ")"


def every_clause(words: Sequence[str]) -> str:
    """A query clause for photos with every one of the words, each in one of the text fields."""
    _check_words(words)
    return "(" + " ".join("(" + " | ".join(f"@{field}:{word}" for field in TEXT_FIELDS) + ")" for word in words) + ")"


def _check_words(words: Sequence[str]) -> None:
    """Only words as words_of makes them reach a query: nothing in them is query syntax."""
    if not words:
        raise ValueError("no words to match")
    if bad := [word for word in words if not WORD.fullmatch(word) or word != word.lower()]:
        raise ValueError(f"not words as clipsearch.search.words makes them: {bad}")


def matched(words: Sequence[str], fields: Mapping[str, str | None]) -> tuple[str, ...]:
    """What of a photo the words matched, as a result says it: "name: kyoto", "folder: 2019"."""
    found = []
    for field, label in TEXT_FIELDS.items():
        held = set((fields.get(field) or "").split())
        if hits := [word for word in words if word in held]:
            found.append(f"{label}: {' '.join(hits)}")
    return tuple(found)


@dataclass(frozen=True)
class Fused:
    """A photo's place in the fused ranking: reciprocal rank fusion of its ranks in CLIP's ranking and in the
    text ranking (None where it is not in one), then the words it carries, then its similarity."""

    key: str
    clip_rank: int | None
    text_rank: int | None
    words: int
    similarity: float

    @property
    def score(self) -> float:
        return sum(1.0 / (FUSION_K + rank) for rank in (self.clip_rank, self.text_rank) if rank is not None)


def fuse(
    clip: Sequence[tuple[str, float]], text: Sequence[tuple[str, float, int]], limit: int | None = None
) -> list[Fused]:
    """One ranking of CLIP's (key, similarity), best first, and the text matches (key, similarity, words
    matched): the text matches are ranked by the words they carry, then by similarity; the two rankings
    are fused by reciprocal rank. A photo in both rises above those in one; one in the text ranking only
    stands beside CLIP's photo of the same rank (before it: it carries the words), so CLIP's results are
    interleaved, never pushed out by the text matches alone."""
    text_ranked = sorted(text, key=lambda match: (-match[2], -match[1]))
    words = {key: count for key, _, count in text_ranked}
    similarity = {key: score for key, score in clip} | {key: score for key, score, _ in text_ranked}
    clip_rank = {key: rank for rank, (key, _) in enumerate(clip, 1)}
    text_rank = {key: rank for rank, (key, _, _) in enumerate(text_ranked, 1)}
    fused = [
        Fused(key, clip_rank.get(key), text_rank.get(key), words.get(key, 0), similarity[key])
        for key in dict.fromkeys([*clip_rank, *text_rank])
    ]
    fused.sort(key=lambda photo: (-photo.score, -photo.words, -photo.similarity))
    return fused[:limit] if limit is not None else fused


def carried(words: Sequence[str], fields: Iterable[str | None]) -> int:
    """How many of the words the fields hold."""
    held = {word for text in fields for word in (text or "").split()}
    return sum(word in held for word in words)
