"""How the page shows a photo: its picture (the stored thumbnail, else one made from its file, else its URL),
its caption, the gallery of results, and the dialog that opens one photo larger with its labels."""

from __future__ import annotations

import base64
import json
import math
from importlib import resources as package_files
from pathlib import Path
from typing import Literal

import numpy as np
import streamlit as st

from clipsearch.app import problems, resources
from clipsearch.display import escape_markdown
from clipsearch.library import (
    DEFAULT_LABELS,
    PHOTO_FIELDS,
    Hit,
    LabelList,
    Library,
    Photo,
    Result,
    display_path,
    taken_iso,
)

DIALOG_SIDE = 1600  # "Open" sends this much, not the camera's full file
NEAR_DUPLICATES_PICTURED = 8  # of a result's near-duplicates; the rest are named
TOP_LABELS = 5


def taken_label(hit: Hit, full: bool = False) -> str:
    """When the photo was taken: the day (with the time, when `full`); "file date" when no EXIF said it."""
    photo = hit.photo
    stamp = taken_iso(photo.taken or 0.0, photo.offset or "")
    label = stamp.replace("T", " ") if full else stamp[:10]
    return label + (" (file date)" if photo.taken_from == "file" else "")


def how_similar(hit: Hit, similarity: str = "") -> str:
    """ " · " and a result's similarity; nothing for a photo listed by filters alone, which has none."""
    return "" if math.isnan(hit.score) else f" · {similarity}{hit.score:.3f}"


@st.cache_data(max_entries=1024, show_spinner=False)
def resized_photo(path: str, mtime: float, long_side: int) -> bytes | None:
    """A photo file upright and at most long_side pixels (mtime only keys the cache)."""
    return Library.resized(Path(path), long_side)


def picture(hit: Hit, library: Library) -> bytes | str | None:
    """What Library.picture allows: the stored thumbnail, the photo's web address, or a thumbnail made from its
    file."""
    found = library.picture(hit)
    if isinstance(found, Path):
        return resized_photo(str(found), found.stat().st_mtime, resources.THUMBNAIL_SIDE)
    return found


def captioned_picture(hit: Hit, library: Library, caption: str, width: int | Literal["stretch"]) -> None:
    """A photo's picture with its caption, and the day it was taken; the caption alone without a picture."""
    if hit.photo.taken is not None:
        caption += f" · {taken_label(hit)}"
    image = picture(hit, library)
    if image is None:
        st.caption(f"{caption} (no thumbnail)")
    else:  # thumbnails are JPEG (photos.make_thumbnail): Streamlit need not open each one to tell
        st.image(image, caption=caption, width=width, output_format="JPEG" if isinstance(image, bytes) else "auto")


def where_taken(photo: Photo) -> str:
    """Where it was taken, in words: its place, or why there is none."""
    if photo.position is None:
        return "no GPS position"
    if (place := photo.place) is None:
        return f"at {photo.position[0]:.4f}, {photo.position[1]:.4f}, far from any town"
    return f"in {place.describe()}"


def show_labels(library: Library, vector: np.ndarray) -> None:
    """The labels of the sidebar ranked for a photo's vector: CLIP's zero-shot classification."""
    labels = LabelList.parse(st.session_state.get("labels", "\n".join(DEFAULT_LABELS))).labels
    ranked = library.labels(vector, labels)[:TOP_LABELS]
    if not ranked:
        st.caption("Add some labels in the sidebar to rank them.")
    for score in ranked:
        label = f"**{escape_markdown(score.label)}** · {score.probability:.0%} · cosine {score.similarity:.3f}"
        st.progress(score.probability, text=label)


def more_like(key: str) -> None:
    st.session_state.like = key


@st.dialog("Photo", width="large")
def open_photo(hit: Hit, rank: int) -> None:
    """A dialog is a fragment, which keeps its arguments: it takes the Library from resources, not as one. Its
    own runs do not go through the page's handling of errors."""
    with problems.explained():
        photo_shown(hit, rank, resources.library())


def photo_shown(hit: Hit, rank: int, library: Library) -> None:
    """The photo at the dialog's width, what is known of it, More like this, and what is in it."""
    path = library.photo_file(hit)
    image = (resized_photo(str(path), path.stat().st_mtime, DIALOG_SIDE) if path else None) or picture(hit, library)
    if image is not None:
        st.image(image)  # its own size, at most the dialog's width
    photo = hit.photo
    st.markdown(f"**#{rank}{how_similar(hit, 'similarity ')}** · {escape_markdown(display_path(hit.path))}")
    st.caption(
        f"{photo.width} x {photo.height} px · {(photo.size or 0) / 1024:.0f} KiB"
        + (f" · taken {taken_label(hit, full=True)}" if photo.taken is not None else "")
        + (f" · {escape_markdown(photo.camera)}" if photo.camera else "")
        + f" · {escape_markdown(where_taken(photo))}"
        + ("" if path else " · shown from the stored thumbnail (the photo is not in CLIPSEARCH_PHOTOS on this machine)")
    )
    if st.button("More like this", key=f"dialog-like-{hit.key}"):
        more_like(hit.key)
        st.rerun()  # the whole page, not the dialog alone: it closes, and the search is made from the photo
    st.subheader("What is in this photo?")
    vector = library.stored_vector(hit.key)
    if vector is not None:
        show_labels(library, vector)


LIKE, OPEN, NEAR_DUPLICATES = "like", "open", "near-duplicates"  # what the gallery's actions send
_ASSETS = package_files.files("clipsearch.app")
# One element for the whole gallery (gallery.js): its pictures, captions and each result's actions.
GALLERY = st.components.v2.component(
    "clipsearch_gallery",
    js=_ASSETS.joinpath("gallery.js").read_text(encoding="utf-8"),
    css=_ASSETS.joinpath("gallery.css").read_text(encoding="utf-8"),
)


def gallery(results: list[Result], columns: int, library: Library) -> None:
    """The results in rows of `columns`, ranks left to right (a phone stacks them, one a row), each with its
    actions (More like this, Open, +N near-duplicates); an action asked for in the last run opens its dialog."""
    tiles = [gallery_tile(rank, result, library) for rank, result in enumerate(results, 1)]
    st.session_state.shown = frozenset(tile["key"] for tile in tiles)  # the photos an action may name
    # The tiles as one JSON string: Streamlit looks for dataframes in a component's lists (importing pandas and
    # pyarrow), not in a string.
    GALLERY(key="gallery", data={"columns": columns, "tiles": json.dumps(tiles)}, on_action_change=chosen)
    if (asked := st.session_state.pop("asked", None)) is not None:
        for rank, result in enumerate(results, 1):
            if result.hit.key == asked[0]:
                open_photo(result.hit, rank) if asked[1] == OPEN else near_duplicates(result)


def gallery_tile(rank: int, result: Result, library: Library) -> dict[str, object]:
    """What the gallery shows of a result: its picture (a data URL of the stored thumbnail, or the photo's
    address), its caption as plain text, and its actions."""
    hit = result.hit
    caption = f"#{rank}{how_similar(hit)} · {display_path(hit.photo.name or hit.path)}"
    if result.matched:  # what of it the words matched as text: why it rose
        caption += " · " + "; ".join(result.matched)
    if hit.photo.taken is not None:
        caption += f" · {taken_label(hit)}"
    image = picture(hit, library)
    if image is None:
        caption += " (no thumbnail)"
    actions = [{"action": LIKE, "label": "More like this"}, {"action": OPEN, "label": "Open"}]
    if folded := result.near_duplicates:
        label = f"+{len(folded)} near-duplicate" + ("s" if len(folded) > 1 else "")
        actions.append({"action": NEAR_DUPLICATES, "label": label})
    return {
        "key": hit.key,
        "rank": rank,
        "src": f"data:image/jpeg;base64,{base64.b64encode(image).decode()}" if isinstance(image, bytes) else image,
        "caption": caption,
        "actions": actions,
    }


def chosen() -> None:
    """An action of the gallery: More like this searches from its photo; the others open a dialog as the gallery
    is drawn again."""
    asked = st.session_state.gallery.action  # from the browser: only a photo shown and an action it offers
    key = asked.get("key") if isinstance(asked, dict) else None
    if not isinstance(key, str) or key not in st.session_state.get("shown", ()):
        return
    if asked.get("action") == LIKE:
        more_like(key)
    elif asked.get("action") in (OPEN, NEAR_DUPLICATES):
        st.session_state.asked = (key, asked["action"])


@st.dialog("Near-duplicates", width="large")
def near_duplicates(result: Result) -> None:
    """The photos folded under a result: pictured when asked for, so that a search sends none of them. A dialog's
    own runs do not go through the page's handling of errors."""
    with problems.explained():
        near_duplicates_shown(result, resources.library())


def near_duplicates_shown(result: Result, library: Library) -> None:
    """Up to NEAR_DUPLICATES_PICTURED of them with their pictures, then the rest by name."""
    st.caption(f"Folded under {escape_markdown(display_path(result.hit.photo.name or result.hit.path))}.")
    folded = result.near_duplicates
    shown = folded[:NEAR_DUPLICATES_PICTURED]
    photos = library.photos([hit.key for hit in shown], (*PHOTO_FIELDS, "thumbnail"))
    cells = st.columns(4)
    for place, (hit, photo) in enumerate(zip(shown, photos, strict=True)):
        with cells[place % 4]:
            near_duplicate(Hit(hit.key, hit.score, photo) if photo else hit, library)
    if rest := folded[NEAR_DUPLICATES_PICTURED:]:
        names = ", ".join(escape_markdown(display_path(other.photo.name or other.path)) for other in rest)
        st.caption(f"and {len(rest)} more: {names}")


def near_duplicate(hit: Hit, library: Library) -> None:
    """A near-duplicate folded under a result: its picture, similarity to the query, name, size and date."""
    photo = hit.photo
    caption = (
        f"≈ {hit.score:.3f} · {escape_markdown(display_path(photo.name or hit.path))} · "
        f"{photo.width} x {photo.height} px"
    )
    captioned_picture(hit, library, caption, "stretch")
