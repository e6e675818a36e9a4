"""CLIP's byte-pair tokenizer without torch, so that a text search through ONNX Runtime never imports it.

open_clip's SimpleTokenizer (OpenAI's, with open_clip's default "lower" cleaning) is the reference: this
reads the same vocabulary file and gives the same token ids (tests/unit/test_tokenizer.py compares them on
thousands of strings). open_clip's module cannot be used as it is because it imports torch.
"""

from __future__ import annotations

import gzip
import heapq
import html
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import ftfy
import numpy as np
import regex

VOCABULARY_FILE = "bpe_simple_vocab_16e6.txt.gz"
MERGES = 49152 - 256 - 2
CACHE_LIMIT = 100_000  # words; a public page sees any text, so the memo of merged words is bounded
CACHED_WORD_CHARS = 64  # longer words are merged again each time rather than kept
START_OF_TEXT = "<start_of_text>"
END_OF_TEXT = "<end_of_text>"


@lru_cache
def _bytes_to_unicode() -> dict[int, str]:
    """OpenAI's reversible map from bytes to printable characters, on which the merges are written."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


def _clean(text: str) -> str:
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


class ClipTokenizer:
    def __init__(self, vocabulary_file: Path, context_length: int = 77) -> None:
        with gzip.open(vocabulary_file) as compressed:
            merges = compressed.read().decode("utf-8").split("\n")[1 : MERGES + 1]
        pairs = [tuple(merge.split()) for merge in merges]
        characters = list(_bytes_to_unicode().values())
        vocabulary = [*characters, *(c + "</w>" for c in characters), *("".join(p) for p in pairs)]
        vocabulary += [START_OF_TEXT, END_OF_TEXT]
        self.ids = {token: i for i, token in enumerate(vocabulary)}
        self.ranks = {pair: rank for rank, pair in enumerate(pairs)}
        self.start = self.ids[START_OF_TEXT]
        self.end = self.ids[END_OF_TEXT]
        self.context_length = context_length
        self.byte_chars = _bytes_to_unicode()
        self.pattern = regex.compile(
            rf"{START_OF_TEXT}|{END_OF_TEXT}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+",
            regex.IGNORECASE,
        )
        self.specials = {START_OF_TEXT: [START_OF_TEXT], END_OF_TEXT: [END_OF_TEXT]}
        self.cache: dict[str, list[str]] = {}

    def encode(self, text: str) -> list[int]:
        """The ids of one text, without the start and end tokens and not cut to the context."""
        return [token for word in self._word_ids(text) for token in word]

    def __call__(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text as open_clip tokenizes it, start and end included, cut to the context length, unpadded.

        Words are merged only until the context is full: the rest of a long text could not change the ids.
        """
        rows = []
        for text in texts:
            ids = [self.start]
            for word in self._word_ids(text):
                ids.extend(word)
                if len(ids) > self.context_length:  # the cut below is decided: later words are never seen
                    break
            ids.append(self.end)
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.end
            rows.append(ids)
        return rows

    def _word_ids(self, text: str) -> Iterator[list[int]]:
        for match in self.pattern.finditer(_clean(text)):
            word = "".join(self.byte_chars[b] for b in match.group().encode())
            yield [self.ids[part] for part in self._merged(word)]

    def padded(self, texts: Sequence[str], length: int | None = None) -> np.ndarray:
        """The token matrix open_clip makes (zeros after the end token), `length` columns wide (default: the
        context length)."""
        rows = self(texts)
        matrix = np.zeros((len(rows), length or self.context_length), dtype=np.int64)
        for i, ids in enumerate(rows):
            matrix[i, : len(ids)] = ids
        return matrix

    def _merged(self, token: str) -> list[str]:
        known = self.specials.get(token) or self.cache.get(token)
        if known is not None:
            return known
        word = merge_pairs([*token[:-1], token[-1] + "</w>"], self.ranks)
        if len(token) <= CACHED_WORD_CHARS:
            if len(self.cache) >= CACHE_LIMIT:
                self.cache.clear()
            self.cache[token] = word
        return word


def merge_pairs(symbols: list[str], ranks: dict[tuple[str, ...], int]) -> list[str]:
    """Byte-pair merging of one word: the adjacent pair of lowest rank merged first, every occurrence of it
    from left to right, until no adjacent pair has a rank.

    The pairs wait in a heap by (rank, position), over a linked list of the symbols, so a word of n symbols
    costs n log n, not the n squared of searching every pair after each merge (a word of any length can
    arrive in a query). Ranks only grow along a merge chain (a pair holding a merged symbol was learned after
    that symbol), so popping by rank merges in the order of the search.
    """
    count = len(symbols)
    following = [*range(1, count), -1]
    preceding = list(range(-1, count - 1))
    alive = [True] * count
    waiting = [(rank, i) for i in range(count - 1) if (rank := ranks.get((symbols[i], symbols[i + 1]))) is not None]
    heapq.heapify(waiting)
    while waiting:
        rank, left = heapq.heappop(waiting)
        right = following[left]
        if not alive[left] or right < 0 or ranks.get((symbols[left], symbols[right])) != rank:
            continue  # that pair was merged away or changed since it was queued
        symbols[left] += symbols[right]
        alive[right] = False
        following[left] = following[right]
        if following[right] >= 0:
            preceding[following[right]] = left
        before, after = preceding[left], following[left]
        if before >= 0 and (rank := ranks.get((symbols[before], symbols[left]))) is not None:
            heapq.heappush(waiting, (rank, before))
        if after >= 0 and (rank := ranks.get((symbols[left], symbols[after]))) is not None:
            heapq.heappush(waiting, (rank, left))
    return [symbol for symbol, kept in zip(symbols, alive, strict=True) if kept]
