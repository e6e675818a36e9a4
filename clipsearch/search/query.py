"""Query arithmetic: "2:golden retriever + pool - 0.5:people" as weighted terms, and their one vector.

A query is one or more terms joined by " + " or " - " (spaces around the operator, so that "t-shirt"
stays one word). A term may start with a weight and a colon ("2:", "0.5:"); "12:30 train" is text, since
a weight is never followed by a digit. The query's vector is the normalised sum of each term's unit
vector times its signed weight.

Queries come from strangers (a shared link, the search box of a public page), so parsing is one pass over
the words, with no pattern that can backtrack, and a query's length, its number of terms and its weights
are bounded: each term is a text the model encodes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_QUERY_CHARS = 1000
MAX_TERMS = 10
MAX_WEIGHT = 100.0
OPERATORS = ("+", "-")


class BadQuery(ValueError):
    """A query that does not follow the grammar; the message says what is wrong."""


@dataclass(frozen=True)
class Term:
    text: str
    weight: float = 1.0


def parse_query(query: str, with_photos: bool = False) -> list[Term]:
    """The terms of a query, each with its signed weight; BadQuery if it is malformed or over the limits.
    `with_photos`: photos are terms of the query too, so its text may be only negative ("- people")."""
    if len(query) > MAX_QUERY_CHARS:
        raise BadQuery(f"the query has {len(query):,} characters; at most {MAX_QUERY_CHARS:,} are read")
    words = query.split()
    if not words:
        raise BadQuery("the query is empty")
    signed: list[tuple[str, list[str]]] = [("+", [])]  # a leading operator replaces this first sign
    for word in words:
        if word in OPERATORS:
            if signed[-1][1] or len(signed) == 1:
                signed.append((word, []))
                continue
            raise BadQuery(f"{_shown(query)}: an operator without a term on both sides (write 'a + b - c')")
        signed[-1][1].append(word)
    if not signed[0][1]:
        signed.pop(0)  # "- people + dog": the query started with an operator
    if not signed[-1][1]:
        raise BadQuery(f"{_shown(query)}: an operator without a term on both sides (write 'a + b - c')")
    if len(signed) > MAX_TERMS:
        raise BadQuery(f"the query has {len(signed)} terms; at most {MAX_TERMS} are allowed")
    terms = [_term(query, sign, words) for sign, words in signed]
    if not with_photos and all(term.weight <= 0 for term in terms):
        raise BadQuery(f"{_shown(query)}: only negative terms; say what you are looking for as well")
    return terms


def _term(query: str, sign: str, words: list[str]) -> Term:
    """One term from its words: "2:golden", "retriever" is golden retriever of weight 2."""
    head, colon, rest = words[0].partition(":")
    weight = 1.0
    if colon and rest and not rest[0].isdecimal() and any(char.isdecimal() for char in head):
        try:
            weight = float(head)
        except ValueError:
            raise BadQuery(f"{_shown(query)}: the weight {head!r} is not a number (write 2:dog or 0.5:dog)") from None
        if not math.isfinite(weight) or abs(weight) > MAX_WEIGHT:
            raise BadQuery(f"{_shown(query)}: the weight {head!r} is not between -{MAX_WEIGHT:g} and {MAX_WEIGHT:g}")
        words = [rest, *words[1:]]
    return Term(" ".join(words), -weight if sign == "-" else weight)


def _shown(query: str) -> str:
    """The query as an error message quotes it."""
    return repr(query.strip())


def combine(vectors: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The normalised weighted sum of unit vectors; BadQuery if the terms cancel out or the sum is not finite."""
    total = np.zeros_like(np.asarray(vectors[0], dtype=np.float32))
    for vector, weight in zip(vectors, weights, strict=True):
        unit = np.asarray(vector, dtype=np.float32)
        total += np.float32(weight) * unit / max(float(np.linalg.norm(unit)), 1e-12)
    norm = float(np.linalg.norm(total))
    if not math.isfinite(norm):
        raise BadQuery("the weighted terms add up to no finite vector: use smaller weights")
    if norm < 1e-6:
        raise BadQuery("the terms cancel each other out: nothing is left to search for")
    combined: np.ndarray = (total / norm).astype(np.float32)
    return combined
