"""The duplicates view: groups of near-identical photos in the whole index, largest first (Library.duplicate_groups:
the index is scanned once per version at the slider's lowest threshold, for every session of the process; each
threshold groups those pairs in memory)."""

from __future__ import annotations

import streamlit as st

from clipsearch.app.pictures import captioned_picture
from clipsearch.display import escape_markdown
from clipsearch.library import PHOTO_FIELDS, DuplicateCaps, Hit, Library, display_path
from clipsearch.links import MAX_COLUMNS
from clipsearch.settings import Settings

CAPS = DuplicateCaps()


def view(settings: Settings, library: Library) -> None:
    st.subheader("Near-duplicates in the index")
    floor = library.duplicate_floor(CAPS)
    threshold = st.slider(
        "Duplicate similarity: photos at least this similar are near-duplicates",
        floor,
        1.0,
        settings.duplicate_similarity,
        0.001,
        key="duplicate_similarity",
        bind="query-params",
        format="%.3f",
    )
    bar = st.empty()

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Checked {done:,} of {total:,} photos")

    report = library.duplicate_groups(threshold, CAPS, (*PHOTO_FIELDS, "thumbnail"), progress)
    bar.empty()
    st.markdown(
        f"**{len(report.sizes)} groups** of near-duplicates ({report.duplicates} photos beyond the first of each) "
        f"among {report.photos:,} photos, checked in {report.seconds:.1f} s ({report.rate:,.0f} photos/s)."
    )
    notes = []
    if len(report.sizes) > CAPS.groups:
        notes.append(f"Showing the {CAPS.groups} largest groups.")
    if report.capped:
        notes.append(
            f"{report.capped:,} photos have over {CAPS.max_neighbours} others at {floor} or more: each is linked to "
            "its nearest of them (the others still join through those)."
        )
    if notes:
        st.caption(" ".join(notes) + " `python -m clipsearch duplicates` lists every group and member.")
    for number, group in enumerate(report.groups, 1):
        with st.container(border=True, key=f"group-{number}"):
            st.markdown(f"**Group {number}** · {group.size} photos · the first has the most pixels")
            cells = st.columns(min(len(group.members), MAX_COLUMNS))
            for place, hit in enumerate(group.members):
                with cells[place % len(cells)]:
                    member(hit, library)
            if group.size > len(group.members):
                st.caption(f"and {group.size - len(group.members)} more")


def member(hit: Hit, library: Library) -> None:
    photo = hit.photo
    caption = (
        f"{hit.score:.4f} · {escape_markdown(display_path(hit.path))} · {photo.width} x {photo.height}"
        f" px · {(photo.size or 0) / 1024:,.0f} KiB"
    )
    captioned_picture(hit, library, caption, "stretch")
