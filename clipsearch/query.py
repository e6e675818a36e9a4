"""Query arithmetic: "2:golden retriever + pool - 0.5:people" as weighted terms, and their one vector.

A query is one or more terms joined by " + " or " - " (spaces around the operator, so that "t-shirt"
stays one word). A term may start with a weight and a colon ("2:", "0.5:"); "12:30 train" is text, since
a weight is never followed by a digit. The query's vector is the normalised sum of each term's unit
vector times its signed weight.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clipsearch.engine import TextEncoding

OPERATOR = re.compile(r"(?:^|\s+)([+-])\s+")
WEIGHT = re.compile(r"^([^\s:]*\d[^\s:]*):(?=[^\s\d])")
DANGLING = re.compile(r"^[+-](\s|$)|\s[+-]$")  # "+ x", "x +": an operator with one side empty


class BadQuery(ValueError):
    """A query that does not follow the grammar; the message says what is wrong."""


@dataclass(frozen=True)
class Term:
    text: str
    weight: float = 1.0


def parse_query(query: str, with_photos: bool = False) -> list[Term]:
    """The terms of a query, each with its signed weight; BadQuery if it is malformed. `with_photos`: photos
    are terms of the query too, so its text may be only negative ("- people")."""
    if not query.strip():
        raise BadQuery("the query is empty")
    pieces = OPERATOR.split(" " + query.strip())  # the space lets a leading operator match: "- people + dog"
    signed = [("+", pieces[0])] if pieces[0].strip() else []
    signed += list(zip(pieces[1::2], pieces[2::2], strict=True))
    terms = []
    for sign, raw in signed:
        text = raw.strip()
        if not text or DANGLING.search(text):
            raise BadQuery(f"{query!r}: an operator without a term on both sides (write 'a + b - c')")
        weight = 1.0
        if match := WEIGHT.match(text):
            try:
                weight = float(match.group(1))
            except ValueError:
                raise BadQuery(
                    f"{query!r}: the weight {match.group(1)!r} is not a number (write 2:dog or 0.5:dog)"
                ) from None
            text = text[match.end() :].strip()
        terms.append(Term(text, -weight if sign == "-" else weight))
    if not with_photos and all(term.weight <= 0 for term in terms):
        raise BadQuery(f"{query!r}: only negative terms; say what you are looking for as well")
    return terms


def combine(vectors: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The normalised weighted sum of unit vectors; BadQuery if the terms cancel out."""
    total = np.zeros_like(np.asarray(vectors[0], dtype=np.float32))
    for vector, weight in zip(vectors, weights, strict=True):
        unit = np.asarray(vector, dtype=np.float32)
        total += np.float32(weight) * unit / max(float(np.linalg.norm(unit)), 1e-12)
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise BadQuery("the terms cancel each other out: nothing is left to search for")
    combined: np.ndarray = (total / norm).astype(np.float32)
    return combined


def vector_of_terms(
    terms: Sequence[Term], encoder: TextEncoding | None, extra: Sequence[np.ndarray] = ()
) -> np.ndarray:
    """The vector of a query's text terms (encoded in one batch) plus `extra` terms of weight 1 (photos)."""
    if not terms and not extra:
        raise BadQuery("nothing to search for")
    if terms and encoder is None:
        raise ValueError("text terms need a text encoder")
    vectors = list(encoder.encode_text([term.text for term in terms])) if terms and encoder else []
    return combine([*vectors, *extra], [*(term.weight for term in terms), *(1.0,) * len(extra)])
