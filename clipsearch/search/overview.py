"""What a collection, or the candidates of a search, hold, counted: photos per month, per camera, per place,
per top-level folder, and the spots of a map. Pure: it works on read rows (schema.Photo), so the page, the
CLI and the tests count the same way."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from clipsearch.index.schema import Photo
from clipsearch.ingest.facts import on_a_day_filtered
from clipsearch.ingest.places import Place

MAX_SPOTS = 500  # the places a map of the whole collection shows, most photos first
MAX_BARS = 30  # the cameras, countries, cities or folders a chart shows, most photos first
# What the overview reads of each photo.
OVERVIEW_FIELDS = ("path", "source", "taken", "camera", "latitude", "longitude", "city", "region", "country")


@dataclass(frozen=True)
class Spot:
    """Photos taken at one place (or, without a place near, at one position rounded to a tenth of a degree):
    where a map puts them, how many, and what to call them."""

    latitude: float
    longitude: float
    photos: int
    name: str
    place: Place | None


@dataclass(frozen=True)
class Overview:
    photos: int
    months: list[tuple[str, int]]  # "2022-05" and its photos, in time order, months without any left out
    cameras: list[tuple[str, int]]  # most photos first
    countries: list[tuple[str, int]]
    cities: list[tuple[Place, int]]
    folders: list[tuple[str, int]]  # top-level folders of the collection ("" for photos at its top)
    spots: list[Spot]  # most photos first, at most MAX_SPOTS
    undated: int  # photos without a capture time (or with one no filter takes: a clock set to year 9999)
    located: int  # photos with a GPS position


def month_of(taken: float) -> str:
    """The month of a PhotoFacts time, as YYYY-MM."""
    return datetime.fromtimestamp(taken, UTC).strftime("%Y-%m")


def month_span(first: str, last: str) -> tuple[date, date]:
    """The first day of month `first` and the last day of month `last` (both YYYY-MM): a date filter."""
    start = datetime.strptime(first, "%Y-%m").date()
    year, month = map(int, last.split("-"))
    following = date(year + month // 12, month % 12 + 1, 1)
    return start, date.fromordinal(following.toordinal() - 1)


def per_month(times: Iterable[float]) -> list[tuple[str, int]]:
    """How many of the times fall in each month, in time order (times outside the days a filter takes left
    out: photos.on_a_day_filtered)."""
    return sorted(Counter(month_of(taken) for taken in times if on_a_day_filtered(taken)).items())


def top_folder(photo: Photo) -> str | None:
    """The top-level folder of a photo file within the collection ("" at its top); None for a downloaded
    photo."""
    if photo.source != "file" or photo.path is None:
        return None
    return photo.path.split("/", 1)[0] if "/" in photo.path else ""


def overview(rows: Iterable[Photo]) -> Overview:
    """Every count of the library view, in one pass over the rows."""
    photos = undated = located = 0
    months: Counter[str] = Counter()
    cameras: Counter[str] = Counter()
    countries: Counter[str] = Counter()
    cities: Counter[Place] = Counter()
    folders: Counter[str] = Counter()
    positions: dict[tuple[object, ...], list[tuple[float, float]]] = defaultdict(list)
    places: dict[tuple[object, ...], Place | None] = {}
    for photo in rows:
        photos += 1
        if photo.taken is None or not on_a_day_filtered(photo.taken):
            undated += 1
        else:
            months[month_of(photo.taken)] += 1
        if photo.camera:
            cameras[photo.camera] += 1
        if (folder := top_folder(photo)) is not None:
            folders[folder] += 1
        place = photo.place
        if place is not None:
            cities[place] += 1
            if place.country:
                countries[place.country] += 1
        if (position := photo.position) is not None:
            located += 1
            spot: tuple[object, ...] = (
                ("place", place) if place else ("at", round(position[0], 1), round(position[1], 1))
            )
            positions[spot].append(position)
            places[spot] = place
    return Overview(
        photos=photos,
        months=sorted(months.items()),
        cameras=cameras.most_common(MAX_BARS),
        countries=countries.most_common(MAX_BARS),
        cities=cities.most_common(MAX_BARS),
        folders=folders.most_common(MAX_BARS),
        spots=_spots(positions, places),
        undated=undated,
        located=located,
    )


def _spots(
    positions: dict[tuple[object, ...], list[tuple[float, float]]], places: dict[tuple[object, ...], Place | None]
) -> list[Spot]:
    """A spot per place at the mean of its photos' positions, most photos first."""
    spots = []
    for key, where in sorted(positions.items(), key=lambda item: -len(item[1]))[:MAX_SPOTS]:
        place = places[key]
        latitude, longitude = _centre(where)
        name = place.describe() if place else f"{latitude:.1f}, {longitude:.1f}"
        spots.append(Spot(latitude, longitude, len(where), name, place))
    return spots


def _centre(positions: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The mean position; longitudes averaged on the side of the 180th meridian where most of them are."""
    latitude = sum(lat for lat, _ in positions) / len(positions)
    longitudes = [lon for _, lon in positions]
    if max(longitudes) - min(longitudes) > 180:  # a place across the 180th meridian (Fiji)
        longitudes = [lon + 360 if lon < 0 else lon for lon in longitudes]
    longitude = sum(longitudes) / len(longitudes)
    return latitude, longitude - 360 if longitude > 180 else longitude
