"""Which photos a search may return, and in what order: the filter as a value, and the pre-filter query it
becomes in the syntax that RediSearch and valkey-search share. Nothing here talks to a server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from clipsearch.index.schema import Photo, tag_value
from clipsearch.ingest.facts import DAY, day_start, taken_iso
from clipsearch.ingest.places import Near, fold_name
from clipsearch.search.words import any_clause, every_clause, phrase_clause

ORDERS = ("relevance", "newest", "oldest")


@dataclass(frozen=True)
class SearchFilter:
    """Which photos a search may return: taken in [after, before) (PhotoFacts time), in a folder (and its
    subfolders), by one of some cameras, in every one of some places (a city, region or country: "Kyoto" and
    "Japan"), within a radius of a position, with words in its file or folder names (every one of them, or
    with `any_word` one of them; words as clipsearch.search.words makes them), with each of some phrases written in
    it or its names (clipsearch.search.words.quoted). Every user-given value is escaped into the query."""

    after: float | None = None
    before: float | None = None
    folder: str | None = None
    cameras: tuple[str, ...] = ()
    places: tuple[str, ...] = ()
    near: Near | None = None
    words: tuple[str, ...] = ()
    any_word: bool = False
    phrases: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def of_days(
        cls,
        after: str | None,
        before: str | None,
        folder: str | None = None,
        camera: str | None = None,
        place: str | None = None,
        near: Near | None = None,
    ) -> SearchFilter:
        """The filter a person sets: days as YYYY-MM-DD, both included (ValueError for a malformed one)."""
        return cls(
            after=day_start(after) if after else None,
            before=day_start(before) + DAY if before else None,
            folder=folder or None,
            cameras=(camera,) if camera and camera.strip() else (),
            places=(place,) if place and place.strip() else (),
            near=near,
        )

    def narrowed(self, other: SearchFilter) -> SearchFilter:
        """The photos both filters let through: FilterConflict, saying why, where none could be (two spans of
        days apart, cameras in common none)."""
        after = max((t for t in (self.after, other.after) if t is not None), default=None)
        before = min((t for t in (self.before, other.before) if t is not None), default=None)
        if after is not None and before is not None and after >= before:
            raise FilterConflict(f"the days {self._days()} and {other._days()} do not meet")
        cameras = self.cameras or other.cameras
        if self.cameras and other.cameras:
            cameras = tuple(camera for camera in self.cameras if camera in other.cameras)
            if not cameras:
                raise FilterConflict(f"a photo is not both from {self._cameras()} and from {other._cameras()}")
        if self.folder and other.folder and self.folder != other.folder:
            raise FilterConflict(f"a photo is not both in folder {self.folder} and in folder {other.folder}")
        if self.near is not None and other.near is not None and self.near != other.near:
            raise FilterConflict("two radii: set one")
        if self.words and other.words and (self.words, self.any_word) != (other.words, other.any_word):
            raise FilterConflict("two sets of words: set one")
        return SearchFilter(
            after=after,
            before=before,
            folder=self.folder or other.folder,
            cameras=cameras,
            places=tuple(dict.fromkeys((*self.places, *other.places))),
            near=self.near or other.near,
            words=self.words or other.words,
            any_word=self.any_word if self.words else other.any_word,
            phrases=tuple(dict.fromkeys((*self.phrases, *other.phrases))),
        )

    def _days(self) -> str:
        """The span of days in words: "2021-01-01 to 2021-12-31", "from 2022-01-01", "until 2019-12-31"."""
        first = taken_iso(self.after)[:10] if self.after is not None else None
        last = taken_iso(self.before - DAY)[:10] if self.before is not None else None
        if first and last:
            return f"{first} to {last}"
        return f"from {first}" if first else f"until {last}" if last else "any day"

    def _cameras(self) -> str:
        return " or ".join(self.cameras)

    def describe(self) -> str:
        """The filter in words ("taken on or after 2021-03-01, in Kyoto"); "" for none."""
        parts = []
        if self.after is not None:
            parts.append(f"taken on or after {taken_iso(self.after)[:10]}")
        if self.before is not None:
            parts.append(f"taken on or before {taken_iso(self.before - DAY)[:10]}")
        if self.folder:
            parts.append(f"in folder {self.folder}")
        if self.cameras:
            parts.append(f"from camera {self._cameras()}")
        parts.extend(f"in {place}" for place in self.places)
        if self.near is not None:
            parts.append(self.near.describe())
        if self.words:
            parts.append(f"named with {'any' if self.any_word else 'all'} of the words {' '.join(self.words)}")
        parts.extend(f'with "{" ".join(phrase)}" written in it or its name' for phrase in self.phrases)
        return ", ".join(parts)

    def admits(self, photo: Photo) -> bool:
        """The part of the filter the index's pre-filter only bounds: a photo in the box around the radius is
        admitted if it is within the circle (read its latitude and longitude)."""
        return self.near is None or self.near.holds(photo.latitude, photo.longitude)

    def query(self) -> str:
        """The pre-filter of a KNN query, or "*" for none."""
        clauses = []
        if self.after is not None or self.before is not None:
            low = "-inf" if self.after is None else repr(float(self.after))
            high = "+inf" if self.before is None else f"({float(self.before)!r}"
            clauses.append(f"@taken:[{low} {high}]")
        if self.near is not None:
            south, north, west, east = self.near.box()
            clauses.append(f"@latitude:[{south!r} {north!r}] @longitude:[{west!r} {east!r}]")
        if tag := tag_value((self.folder or "").strip().strip("/")):  # " ", "/ /", a tab: no filter
            clauses.append(f"@folders:{{{escape_tag(tag)}}}")
        if cameras := [escape_tag(tag) for camera in self.cameras if (tag := tag_value(camera.strip().strip("/")))]:
            clauses.append(f"@camera_tag:{{{' | '.join(cameras)}}}")  # any of them
        for place in self.places:
            if tag := tag_value(fold_name(place)):
                clauses.append(f"@places:{{{escape_tag(tag)}}}")  # every one of them
        if self.words:
            clauses.append(any_clause(self.words) if self.any_word else every_clause(self.words))
        clauses.extend(phrase_clause(phrase) for phrase in self.phrases)
        return f"({' '.join(clauses)})" if clauses else "*"


class FilterConflict(ValueError):
    """Two filters that no photo could pass together, in words."""


def escape_tag(value: str) -> str:
    """Every character but letters, digits and _ escaped with a backslash: the query syntaxes of RediSearch
    and valkey-search give meaning to punctuation and spaces inside {...}."""
    return "".join(char if char.isalnum() or char == "_" else "\\" + char for char in value)


class _HasPhoto(Protocol):
    @property
    def photo(self) -> Photo: ...


H = TypeVar("H", bound=_HasPhoto)


def in_order(hits: Sequence[H], order: str) -> list[H]:
    """Hits best first as they come ("relevance"), or by capture time, photos without one last. Stable:
    equal times keep their relevance order."""
    if order not in ORDERS:
        raise ValueError(f"order {order!r}: choose one of {', '.join(ORDERS)}")
    if order == "relevance":
        return list(hits)
    sign = -1.0 if order == "newest" else 1.0
    return sorted(hits, key=lambda hit: (hit.photo.taken is None, sign * (hit.photo.taken or 0.0)))
