"""The duplicates view: groups of near-identical photos in the whole index, largest first. The index is
scanned once per version at the slider's lowest threshold, for every session of the process (one scan at a
time); each threshold groups those pairs in memory."""

from __future__ import annotations

import streamlit as st

from clipsearch.app import resources
from clipsearch.app.pictures import captioned_picture
from clipsearch.display import escape_markdown
from clipsearch.duplicates import report as duplicate_report
from clipsearch.library import Library
from clipsearch.links import MAX_COLUMNS
from clipsearch.photos import display_path
from clipsearch.schema import PHOTO_FIELDS
from clipsearch.settings import Settings
from clipsearch.store import Hit

MAX_GROUPS_SHOWN = 100
MAX_MEMBERS_SHOWN = 16  # of each group
FLOOR = 0.9  # the lowest threshold: where the one scan per index version reads down to
MAX_NEIGHBOURS_SCANNED = 64  # per photo: a dense library costs at most this many reads a photo


def view(settings: Settings, library: Library) -> None:
    st.subheader("Near-duplicates in the index")
    floor = min(FLOOR, settings.duplicate_similarity)
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

    pairs = library.shared_pairs(resources.duplicate_scans(), floor, MAX_NEIGHBOURS_SCANNED, progress)
    bar.empty()
    store = library.store()
    report = duplicate_report(
        store, pairs, threshold, (*PHOTO_FIELDS, "thumbnail"), MAX_GROUPS_SHOWN, MAX_MEMBERS_SHOWN
    )
    st.markdown(
        f"**{len(report.sizes)} groups** of near-duplicates ({report.duplicates} photos beyond the first of each) "
        f"among {report.photos:,} photos, checked in {report.seconds:.1f} s ({report.rate:,.0f} photos/s)."
    )
    notes = []
    if len(report.sizes) > MAX_GROUPS_SHOWN:
        notes.append(f"Showing the {MAX_GROUPS_SHOWN} largest groups.")
    if pairs.capped:
        notes.append(
            f"{pairs.capped:,} photos have over {MAX_NEIGHBOURS_SCANNED} others at {floor} or more: each is linked to "
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
