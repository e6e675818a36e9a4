"""The words written in a photo: signs, menus, receipts, screenshots, read at index time by PP-OCR (rapidocr,
on the ONNX Runtime the model already uses; its detection and recognition models ship inside the wheel, so
it reads offline).

What is stored is the words as clipsearch.search.words makes them (lower case, letters and digits), in reading
order, at most MAX_TEXT_CHARS: what a search matches, not a transcript. Lines recognised with a confidence
under MIN_CONFIDENCE are left out, and so are lines of one character, which in photos without text are
most of what is misread (docs/searching.md has the measurements that chose both).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from clipsearch.search.words import words_of

if TYPE_CHECKING:
    from PIL import Image

# What read a photo's text, stored beside it: a photo read by another reader (or none) is read again by a
# run that reads text.
READER = "rapidocr-3.10.0 PP-OCRv6-small"
MIN_CONFIDENCE = 0.8  # a recognised line's confidence, 0 to 1, under which it is left out
MAX_TEXT_CHARS = 4096  # of the words stored per photo; a poster of fine print is cut at a word's end
READ_SIDE = 1280  # the longest side a photo is read at: smaller text than this keeps is not read


class TextReader:
    """PP-OCR's detection, orientation and recognition sessions, made on first use, for every thread: one
    photo is read at a time (its steps keep per-call settings), each with `threads` of ONNX Runtime's."""

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads or max(1, os.cpu_count() or 1)
        self._engine: Any = None
        self._lock = threading.Lock()

    def _loaded(self) -> Any:
        if self._engine is None:
            from rapidocr import RapidOCR

            logging.getLogger("RapidOCR").setLevel(logging.ERROR)  # "no text found" is no warning here
            self._engine = RapidOCR(
                params={
                    "Global.log_level": "error",
                    "Global.text_score": MIN_CONFIDENCE,
                    "Global.max_side_len": READ_SIDE,
                    "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
                    "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                }
            )
        return self._engine

    def read(self, image: Image.Image) -> str:
        """The words written in the photo, in reading order (lines top to bottom), space-separated, at most
        MAX_TEXT_CHARS; "" when it has none."""
        with self._lock:
            found = self._loaded()(image.convert("RGB"))
        recognised = zip(found.txts or (), found.scores or (), strict=True)
        lines = [text for text, score in recognised if kept(text, score)]
        return bounded(" ".join(word for line in lines for word in words_of(line)))


def kept(line: str, confidence: float, threshold: float | None = None) -> bool:
    """Whether a recognised line is stored: confident enough (MIN_CONFIDENCE unless `threshold` is given),
    and more than one character."""
    return confidence >= (MIN_CONFIDENCE if threshold is None else threshold) and len(line.strip()) > 1


def bounded(text: str) -> str:
    """At most MAX_TEXT_CHARS of space-separated words, cut at the end of a word."""
    if len(text) <= MAX_TEXT_CHARS:
        return text
    return text[: MAX_TEXT_CHARS + 1].rsplit(" ", 1)[0]
