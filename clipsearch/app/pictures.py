"""How the page shows a photo: its picture (the stored thumbnail, else one made from its file, else its URL),
its caption, the gallery of results, and the dialog that opens one photo larger with its labels."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import streamlit as st

from clipsearch.app import resources
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
# Gallery tiles of one shape, cropped to fill; "Open" shows the whole photo.
GALLERY_CSS = "<style>.st-key-gallery img {aspect-ratio: 4 / 3; object-fit: cover;}</style>"


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
    """A dialog is a fragment, which keeps its arguments: it takes the Library from resources, not as one."""
    library = resources.library()
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
    st.button("More like this", key=f"dialog-like-{hit.key}", on_click=more_like, args=(hit.key,))
    st.subheader("What is in this photo?")
    vector = library.stored_vector(hit.key)
    if vector is not None:
        show_labels(library, vector)


def gallery(results: list[Result], columns: int, library: Library) -> None:
    """The results in rows of `columns`, ranks left to right (a phone stacks them, one a row)."""
    st.html(GALLERY_CSS)
    with st.container(key="gallery"):
        for rank, result in enumerate(results, 1):
            if (rank - 1) % columns == 0:
                row = st.columns(columns)
            with row[(rank - 1) % columns]:
                gallery_tile(rank, result, library)


LIKE, OPEN = "More like this", "Open"


def gallery_tile(rank: int, result: Result, library: Library) -> None:
    """A result's picture and caption, and its actions as one row of pills (More like this, Open, +N
    near-duplicates): one widget rather than a button each in a container, since every search draws twelve."""
    hit = result.hit
    # Captions are Markdown: a file name must not become a link or an image.
    caption = f"#{rank}{how_similar(hit)} · {escape_markdown(display_path(hit.photo.name or hit.path))}"
    if result.matched:  # what of it the words matched as text: why it rose
        caption += " · " + escape_markdown("; ".join(result.matched))
    captioned_picture(hit, library, caption, "stretch")
    actions = [LIKE, OPEN]
    if folded := result.near_duplicates:
        actions.append(f"+{len(folded)} near-duplicate" + ("s" if len(folded) > 1 else ""))
    st.pills(
        "Actions", actions, key=f"act-{hit.key}", on_change=chosen, args=(hit.key,), label_visibility="collapsed",
        wrap=True,
    )  # fmt: skip
    asked = st.session_state.get("asked")
    if asked is not None and asked[0] == hit.key:
        del st.session_state["asked"]
        if asked[1] == OPEN:
            open_photo(hit, rank)
        else:
            near_duplicates(result)


def chosen(key: str) -> None:
    """An action of a result's pills: More like this searches from it; the others open a dialog as the gallery
    is drawn again. The pill itself goes back to unselected."""
    action = st.session_state[f"act-{key}"]
    st.session_state[f"act-{key}"] = None
    if action == LIKE:
        more_like(key)
    elif action is not None:
        st.session_state.asked = (key, action)


@st.dialog("Near-duplicates", width="large")
def near_duplicates(result: Result) -> None:
    """The photos folded under a result: pictured when asked for, so that a search sends none of them."""
    library = resources.library()
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
