"""What a query's words say about where, when and with what a photo was taken ("temple in Kyoto 2021"), read
against what the index holds, and the words left for CLIP, which cannot read a date or a city off a photo.

Offline and exact: a place or a camera is understood only if the index holds it (its Vocabulary), dates by a
small grammar (years, months, days, seasons, decades, spans, and dates relative to today). A name that is also
an ordinary English word (Turkey, Nice, Reading, Orange) is a place only after "in", "at", "from" or "near"
and written with a capital ("snow in Turkey", not "a turkey in the snow"); a camera whose words are ordinary
("Pixel", "Canon") only after "taken with", "shot on" and the like. The cost is linear in the query's
length: each word is looked up a bounded number of times (MAX_NAME_WORDS).

Seasons are the meteorological ones of the northern hemisphere: spring is March to May, summer June to
August, autumn (fall) September to November, winter December to February; "winter 2021" begins in December
2021. "last summer" is the latest summer that has ended, "this summer" the one of this year.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from clipsearch.index.filters import SearchFilter
from clipsearch.index.schema import Photo
from clipsearch.ingest.facts import DAY, FIRST_DAY, LAST_DAY, day_start
from clipsearch.ingest.places import fold_name

MAX_NAME_WORDS = 6  # the most words of a place or camera name matched ("Santa Cruz de la Sierra")
ORDINARY_WORDS = Path(__file__).parents[1] / "data" / "ordinary-words.txt.gz"  # scripts/make_ordinary_words.py
# What the understanding reads of each photo to make the index's vocabulary.
VOCABULARY_FIELDS = ("taken", "camera", "city", "region", "country")

PLACE_WORDS = frozenset({"in", "at", "from", "near", "around"})
CAMERA_WORDS = (("taken", "with"), ("taken", "on"), ("shot", "on"), ("shot", "with"), ("photographed", "with"))
CAMERA_OWNERS = frozenset({"my", "a", "an", "the", "our", "his", "her", "their"})
DATE_WORDS = frozenset({"in", "during", "of", "from"})
MONTHS = {
    name: number
    for number, names in enumerate(
        (("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun"),
         ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"), ("october", "oct"),
         ("november", "nov"), ("december", "dec")),
        start=1,
    )
    for name in names
}  # fmt: skip
SEASONS = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}  # each season's first month
APOSTROPHE = "\u2019"  # a typographic apostrophe, as phones type it
_TOKEN = re.compile(rf"\w+(?:['{APOSTROPHE}.-]\w+)*")
V = TypeVar("V")
_ORDINAL = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?")


# --- the index's vocabulary -------------------------------------------------------------------


@dataclass(frozen=True)
class Name:
    """A place or camera name as the index holds it, and whether its words are all ordinary English words."""

    shown: str
    ordinary: bool


@dataclass(frozen=True)
class Vocabulary:
    """What the index holds that words can name: its places (city, region and country names, folded into
    words), its cameras (and every run of words within a camera's name, "Pixel 7" of "Google Pixel 7"), and the
    years its photos were taken in."""

    places: dict[tuple[str, ...], Name] = field(default_factory=dict)
    cameras: dict[tuple[str, ...], tuple[tuple[str, ...], bool]] = field(default_factory=dict)  # cameras, ordinary
    years: tuple[int, int] | None = None  # the first and last, or None for an undated index
    # The most words of a name that begins with each word: a word that begins none costs one lookup.
    place_starts: dict[str, int] = field(init=False, repr=False, compare=False)
    camera_starts: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for starts, names in (("place_starts", self.places), ("camera_starts", self.cameras)):
            longest: dict[str, int] = {}
            for words in names:
                longest[words[0]] = max(longest.get(words[0], 0), len(words))
            object.__setattr__(self, starts, longest)

    @classmethod
    def of(cls, places: Iterable[str], cameras: Iterable[str], years: tuple[int, int] | None) -> Vocabulary:
        ordinary = ordinary_words()
        known: dict[tuple[str, ...], Name] = {}
        for place in sorted(set(places)):
            words = tuple(_folded_words(place))
            if words and len(words) <= MAX_NAME_WORDS:
                known.setdefault(words, Name(place, _is_ordinary(words, ordinary)))
        found: dict[tuple[str, ...], set[str]] = {}
        for camera in set(cameras):
            words = tuple(_folded_words(camera))
            for start in range(len(words)):
                for end in range(start + 1, min(len(words), start + MAX_NAME_WORDS) + 1):
                    if any(word.isalpha() for word in words[start:end]):  # "7" alone names no camera
                        found.setdefault(words[start:end], set()).add(camera)
        runs = {
            words: (tuple(sorted(names, key=str.lower)), _is_ordinary(words, ordinary))
            for words, names in found.items()
        }
        return cls(known, runs, years)

    @classmethod
    def of_json(cls, text: str) -> Vocabulary:
        """From what vocabulary_json made."""
        held = json.loads(text)
        years = held["years"]
        return cls.of(held["places"], held["cameras"], None if years is None else (years[0], years[1]))


def vocabulary_json(photos: Iterable[Photo]) -> str:
    """What an index's photos (VOCABULARY_FIELDS read) can be named by, as JSON: their place names, cameras
    and first and last years; what the index keeps for every process to read (PhotoStore.derived)."""
    places: set[str] = set()
    cameras: set[str] = set()
    first = last = None
    for photo in photos:
        places.update(name for name in (photo.city, photo.region, photo.country) if name)
        if photo.camera:
            cameras.add(photo.camera)
        if photo.taken is not None:
            year = datetime.fromtimestamp(photo.taken, UTC).year
            if FIRST_DAY.year <= year <= LAST_DAY.year:
                first, last = min(first or year, year), max(last or year, year)
    years = None if first is None or last is None else [first, last]
    return json.dumps({"places": sorted(places), "cameras": sorted(cameras), "years": years}, ensure_ascii=False)


def ordinary_words() -> frozenset[str]:
    """The English words written in lower case (SCOWL's list): read for each vocabulary made (once per index
    version), not kept, since a page would hold them for good."""
    with gzip.open(ORDINARY_WORDS, "rt", encoding="utf-8") as words:
        return frozenset(words.read().split())


def _is_ordinary(words: Sequence[str], ordinary: frozenset[str]) -> bool:
    """Every word an ordinary one or a short one ("Y", "Ii"), and none with a digit ("Pixel 7" and "5D" name a
    camera): such a name is understood only where the words around it say it is one."""
    if any(char.isdigit() for word in words for char in word):
        return False
    return all(word in ordinary or len(word) <= 2 for word in words)


def _folded_words(text: str) -> list[str]:
    return [fold_name(match.group()).replace(APOSTROPHE, "'") for match in _TOKEN.finditer(text)]


# --- what was understood ----------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """Days, both included; None for an open end."""

    first: date | None
    last: date | None

    def describe(self) -> str:
        if self.first is not None and self.last is not None:
            return self.first.isoformat() if self.first == self.last else f"{self.first} to {self.last}"
        if self.first is not None:
            return f"from {self.first}"
        return f"until {self.last}"


@dataclass(frozen=True)
class Part:
    """One thing understood: its kind ("place", "date" or "camera"), the words it was read from as typed
    ("in Kyoto"), where they are in the query (characters), and its value: a place's name, a Span, or the
    cameras it names (several when the words fit several: "Pixel" of a Pixel 6 and a Pixel 7)."""

    kind: str
    words: str
    start: int
    end: int
    place: str | None = None
    span: Span | None = None
    cameras: tuple[str, ...] = ()

    def value(self) -> str:
        """The value in words, as the CLI, the JSON and a chip say it."""
        if self.place is not None:
            return self.place
        if self.span is not None:
            return self.span.describe()
        return " or ".join(self.cameras)

    def filter(self) -> SearchFilter:
        """The filter this part says: its place, its days, or any of its cameras."""
        if self.place is not None:
            return SearchFilter(places=(self.place,))
        if self.span is not None:
            first, last = self.span.first, self.span.last
            return SearchFilter(
                after=day_start(first.isoformat()) if first is not None else None,
                before=day_start(last.isoformat()) + DAY if last is not None else None,
            )
        return SearchFilter(cameras=self.cameras)

    def as_json(self) -> dict[str, object]:
        return {"kind": self.kind, "words": self.words, "value": self.value()}


@dataclass(frozen=True)
class Understood:
    """A query's parts understood, in the order typed, and the words left for CLIP ("" when the query was all
    filters)."""

    text: str
    parts: tuple[Part, ...] = ()

    @property
    def words(self) -> str:
        """The query without the words understood, spaces tidied."""
        kept, at = [], 0
        for part in self.parts:
            kept.append(self.text[at : part.start])
            at = part.end
        kept.append(self.text[at:])
        # The commas that stood between understood parts ("in Ankara, Turkey") go with them.
        left = " ".join(piece for piece in " ".join(kept).split() if piece.strip(",;"))
        return left if any(char.isalnum() for char in left) else ""

    def filter(self) -> SearchFilter:
        """What the parts say, as one filter (every part holds); FilterConflict where two cannot both hold
        ("2019 before 2018")."""
        where = SearchFilter()
        for part in self.parts:
            where = where.narrowed(part.filter())
        return where

    def without(self, words: Iterable[str]) -> Understood:
        """The parts read from these words (as typed) given back to CLIP: a chip removed."""
        declined = set(words)
        return replace(self, parts=tuple(part for part in self.parts if part.words not in declined))


@dataclass(frozen=True)
class _Token:
    word: str  # folded
    typed: str
    start: int
    end: int

    @property
    def capitalised(self) -> bool:
        return self.typed[:1].isupper()


def understand(text: str, vocabulary: Vocabulary, today: date) -> Understood:
    """The places, dates and cameras that `text` names of those `vocabulary` holds (dates relative to
    `today`), and the words left."""
    tokens = [
        _Token(fold_name(match.group()).replace(APOSTROPHE, "'"), match.group(), match.start(), match.end())
        for match in _TOKEN.finditer(text)
    ]
    parts: list[Part] = []
    at = 0
    while at < len(tokens):
        after_place = bool(parts) and parts[-1].kind == "place" and parts[-1].end == tokens[at - 1].end
        found = (
            _date(tokens, at, vocabulary, today)
            or _camera(tokens, at, vocabulary)
            or _place(tokens, at, vocabulary, after_place)
        )
        if found is None or _in_a_term(text, found[0].start) or _quoted(text, found[0].start):
            at += 1
            continue
        part, at = found
        parts.append(replace(part, words=text[part.start : part.end]))
    return Understood(text, tuple(parts))


def _in_a_term(text: str, start: int) -> bool:
    """Whether the words at `start` are a term of query arithmetic that CLIP must see: a weighted one ("2:Kyoto")
    or one taken away ("temple - Kyoto")."""
    return text[:start].rstrip()[-1:] in ("-", ":")


def _quoted(text: str, start: int) -> bool:
    """Whether the words at `start` are inside double quotes: words that must be written in the photo or its
    name ("\"Kyoto\"" is the word, not the place; clipsearch.search.words.quoted)."""
    return text[:start].count('"') % 2 == 1


# --- places -----------------------------------------------------------------------------------


def _longest(
    tokens: Sequence[_Token], at: int, names: dict[tuple[str, ...], V], starts: dict[str, int]
) -> tuple[int, V] | None:
    """The longest name of `names` that the words from `at` spell: (its end, its value)."""
    for end in range(min(len(tokens), at + starts.get(tokens[at].word, 0)), at, -1):
        key = tuple(token.word for token in tokens[at:end])
        if key in names:
            return end, names[key]
    return None


def _place(tokens: Sequence[_Token], at: int, vocabulary: Vocabulary, after_place: bool) -> tuple[Part, int] | None:
    """A place the index holds; one whose words are ordinary only after a place word or another place ("Kyoto,
    Japan"), with a capital."""
    introduced = tokens[at].word in PLACE_WORDS and at + 1 < len(tokens)
    start = at + 1 if introduced else at
    found = _longest(tokens, start, vocabulary.places, vocabulary.place_starts)
    if found is None:
        return None
    end, name = found
    if name.ordinary and not ((introduced or after_place) and tokens[start].capitalised):
        return None
    return _span_part("place", tokens, at, end, place=name.shown), end


def _span_part(kind: str, tokens: Sequence[_Token], start: int, end: int, **value: object) -> Part:
    return Part(kind, "", tokens[start].start, tokens[end - 1].end, **value)  # type: ignore[arg-type]


# --- cameras ----------------------------------------------------------------------------------


def _camera(tokens: Sequence[_Token], at: int, vocabulary: Vocabulary) -> tuple[Part, int] | None:
    start = at
    words = tuple(token.word for token in tokens[at : at + 2])
    introduced = words in CAMERA_WORDS or words[:1] == ("with",) or words[:1] == ("on",)
    if words in CAMERA_WORDS:
        start += 2
    elif introduced:
        start += 1
    if introduced and start < len(tokens) and tokens[start].word in CAMERA_OWNERS:
        start += 1
    if start >= len(tokens):
        return None
    found = _longest(tokens, start, vocabulary.cameras, vocabulary.camera_starts)
    if found is None:
        return None
    end, (cameras, ordinary) = found
    if ordinary and not introduced:
        return None
    if not introduced:
        at = start
    return _span_part("camera", tokens, at, end, cameras=cameras), end


# --- dates ------------------------------------------------------------------------------------


def _date(tokens: Sequence[_Token], at: int, vocabulary: Vocabulary, today: date) -> tuple[Part, int] | None:
    """A date or a span of dates from `at`: "between A and B", "from A to B", "A to B", "before A", "after A",
    "since A", "until A", "in A", or A alone (a bare year only if the index has photos of that year)."""
    word = tokens[at].word
    if (
        word == "between"
        and (a := _moment(tokens, at + 1, today))
        and _is(tokens, a[1], "and")
        and (b := _moment(tokens, a[1] + 1, today))
    ):
        return _date_part(tokens, at, b[1], _between(a[0], b[0]))
    if word in ("before", "after", "since", "until", "till") and (a := _moment(tokens, at + 1, today)):
        span, end = a
        bounds = {
            "before": Span(None, _day_before(span.first)),
            "after": Span(_day_after(span.last), None),
            "since": Span(span.first, None),
            "until": Span(None, span.last),
            "till": Span(None, span.last),
        }
        return _date_part(tokens, at, end, bounds[word])
    introduced = word in DATE_WORDS
    start = at + 1 if introduced else at
    if introduced and _is(tokens, start, "the"):  # "in the summer of 2021"
        start += 1
    if start >= len(tokens) or (a := _moment(tokens, start, today)) is None:
        return None
    span, end = a
    if _is(tokens, end, "to", "until", "till", "through") and (b := _moment(tokens, end + 1, today)):
        return _date_part(tokens, at, b[1], _between(span, b[0]))
    bare_year = end == start + 1 and tokens[start].word.isdigit() and not introduced
    if bare_year and not _held(vocabulary, int(tokens[start].word)):
        return None  # "1984 poster" over photos of 2010 to 2024: words for CLIP
    return _date_part(tokens, at, end, span)


def _held(vocabulary: Vocabulary, year: int) -> bool:
    return vocabulary.years is not None and vocabulary.years[0] <= year <= vocabulary.years[1]


def _between(a: Span, b: Span) -> Span:
    """From the earlier to the later, whichever was said first ("2021 to 2019" is 2019 to 2021)."""
    assert a.first is not None and a.last is not None and b.first is not None and b.last is not None
    return Span(min(a.first, b.first), max(a.last, b.last))


def _date_part(tokens: Sequence[_Token], start: int, end: int, span: Span) -> tuple[Part, int]:
    return _span_part("date", tokens, start, end, span=span), end


def _is(tokens: Sequence[_Token], at: int, *words: str) -> bool:
    return at < len(tokens) and tokens[at].word in words


def _day_before(day: date | None) -> date | None:
    return None if day is None or day <= FIRST_DAY else day - timedelta(days=1)


def _day_after(day: date | None) -> date | None:
    return None if day is None or day >= LAST_DAY else day + timedelta(days=1)


def _moment(tokens: Sequence[_Token], at: int, today: date) -> tuple[Span, int] | None:
    """One date from `at` (a day, a month, a season, a year, a decade, or one relative to today) as the days
    it covers, and where its words end."""
    if at >= len(tokens):
        return None
    word = tokens[at].word
    following = tokens[at + 1].word if at + 1 < len(tokens) else ""
    if word in ("this", "last") and following:
        return _relative(word == "last", following, today, at + 2)
    if word == "today":
        return Span(today, today), at + 1
    if word == "yesterday":
        return Span(today - timedelta(days=1), today - timedelta(days=1)), at + 1
    if (iso := _iso(word)) is not None:
        return iso, at + 1
    if (decade := _decade(word, today)) is not None:
        return decade, at + 1
    if word == "the" and (decade := _decade(following, today)) is not None:  # "the 90s"
        return decade, at + 2
    if (year := _year(word)) is not None:
        return Span(date(year, 1, 1), date(year, 12, 31)), at + 1
    after_next = tokens[at + 2].word if at + 2 < len(tokens) else ""
    if (number := _ORDINAL.fullmatch(word)) and following in MONTHS:  # "15 March 2022"
        year = _year(after_next)
        named = _day(year, following, int(number.group(1))) if year is not None else None
        return (Span(named, named), at + 3) if named is not None else None
    if word in MONTHS:
        if (number := _ORDINAL.fullmatch(following)) and (year := _year(after_next)) is not None:  # "March 15 2022"
            named = _day(year, word, int(number.group(1)))
            return (Span(named, named), at + 3) if named is not None else None
        skip = 2 if following == "of" else 1  # "March 2022", "March of 2022"
        if at + skip < len(tokens) and (year := _year(tokens[at + skip].word)) is not None:
            return _month(year, MONTHS[word]), at + skip + 1
        return None
    if word in SEASONS:
        skip = 2 if following == "of" else 1  # "summer 2021", "summer of 2021"
        if at + skip < len(tokens) and (year := _year(tokens[at + skip].word)) is not None:
            return _season(year, SEASONS[word]), at + skip + 1
    return None


def _year(word: str) -> int | None:
    if len(word) == 4 and word.isdigit() and FIRST_DAY.year <= int(word) <= LAST_DAY.year:
        return int(word)
    return None


def _day(year: int, month: str, day: int) -> date | None:
    try:
        return date(year, MONTHS[month], day)
    except ValueError:
        return None


def _iso(word: str) -> Span | None:
    """2022-03-15 or 2022-03 (a month)."""
    pieces = word.split("-")
    if len(pieces) not in (2, 3) or not all(piece.isdigit() for piece in pieces) or _year(pieces[0]) is None:
        return None
    year, month = int(pieces[0]), int(pieces[1])
    if len(pieces) == 2:
        return _month(year, month) if 1 <= month <= 12 and len(pieces[1]) == 2 else None
    try:
        day = date(year, month, int(pieces[2]))
    except ValueError:
        return None
    return Span(day, day)


def _decade(word: str, today: date) -> Span | None:
    """1990s, or 90s (the latest such decade that has begun)."""
    if len(word) == 5 and word.endswith("s") and word[:4].isdigit() and word[3] == "0":
        start = int(word[:4])
    elif len(word) == 3 and word.endswith("s") and word[:2].isdigit() and word[1] == "0":
        century = today.year // 100 * 100
        start = century + int(word[:2])
        if start > today.year:
            start -= 100
    else:
        return None
    if not FIRST_DAY.year <= start <= LAST_DAY.year - 9:
        return None
    return Span(date(start, 1, 1), date(start + 9, 12, 31))


def _month(year: int, month: int) -> Span:
    following = date(year + month // 12, month % 12 + 1, 1)
    return Span(date(year, month, 1), following - timedelta(days=1))


def _season(year: int, first_month: int) -> Span:
    start = date(year, first_month, 1)
    end_year, end_month = (year + 1, 2) if first_month == 12 else (year, first_month + 2)
    return Span(start, _month(min(end_year, LAST_DAY.year), end_month).last)


def _relative(last: bool, unit: str, today: date, end: int) -> tuple[Span, int] | None:
    """this/last year, month, week, or season."""
    if unit == "year":
        year = today.year - (1 if last else 0)
        return Span(date(year, 1, 1), date(year, 12, 31)), end
    if unit == "month":
        first = today.replace(day=1)
        if last:
            first = (first - timedelta(days=1)).replace(day=1)
        return _month(first.year, first.month), end
    if unit == "week":
        monday = today - timedelta(days=today.weekday(), weeks=1 if last else 0)
        return Span(monday, monday + timedelta(days=6)), end
    if unit in SEASONS:
        first_month = SEASONS[unit]
        if last:
            year = today.year
            while (_season(year, first_month).last or LAST_DAY) >= today:
                year -= 1
            return _season(year, first_month), end
        year = today.year - (first_month == 12 and today.month <= 2)
        return _season(year, first_month), end
    return None
