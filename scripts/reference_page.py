"""The floor for the page benchmarks: the least a Streamlit page that shows the same search can do.

A text box bound to ?q= (labelled as the search page's), and for a query 12 thumbnails, each captioned, with
two buttons: no layout, no container, no columns. The thumbnails are made once from the photo folder and
cached, so a query costs only Streamlit itself; it never touches CLIP or Valkey. Run by scripts/bench_page.py
and scripts/bench_visitors.py; CLIPSEARCH_PHOTOS names the folder (default photos/).
"""

from __future__ import annotations

import io
import os
import zlib
from pathlib import Path

import streamlit as st
from PIL import Image


@st.cache_resource
def thumbnails(folder: str) -> list[tuple[str, bytes]]:
    made = []
    for path in sorted(Path(folder).glob("*.jpg")):
        image = Image.open(path).convert("RGB")
        image.thumbnail((256, 256))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
        made.append((path.name, buffer.getvalue()))
    return made


query = st.text_input("Describe the photo you are looking for, then press Enter", key="q", bind="query-params")
if query:
    pool = thumbnails(os.environ.get("CLIPSEARCH_PHOTOS", "photos"))
    start = zlib.crc32(query.encode()) % len(pool)  # other photos for each query, as a search would give
    st.markdown(f"Photos matching **{query}** · 12 of 12 results")
    for rank in range(1, 13):
        name, data = pool[(start + rank) % len(pool)]
        st.image(data, caption=f"#{rank} · 0.000 · {name}")
        st.button("More like this", key=f"like-{rank}")
        st.button("Open", key=f"open-{rank}")
