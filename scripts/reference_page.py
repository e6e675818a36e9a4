"""The floor for the page benchmark: a bare Streamlit page with the search page's gallery shape.

A text box bound to ?q=, a heading, and 12 thumbnails in 4 columns, each with a caption and two buttons,
made once from the photo folder and cached, so each query costs only Streamlit itself. It never touches
CLIP or Valkey. Run by scripts/bench_page.py; CLIPSEARCH_PHOTOS names the folder (default photos/).
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


st.set_page_config(page_title="reference", layout="wide")
st.title("reference")
query = st.text_input("Describe the photo you are looking for, then press Enter", key="q", bind="query-params")
if query:
    pool = thumbnails(os.environ.get("CLIPSEARCH_PHOTOS", "photos"))
    start = zlib.crc32(query.encode()) % len(pool)  # other photos for each query, as a search would give
    shown = [pool[(start + i) % len(pool)] for i in range(12)]
    st.markdown(f"Photos matching **{query}** · 12 of 12 results")
    with st.container(key="gallery"):
        for rank, (name, data) in enumerate(shown, 1):
            if (rank - 1) % 4 == 0:
                row = st.columns(4)
            with row[(rank - 1) % 4]:
                st.image(data, caption=f"#{rank} · 0.000 · {name}", width="stretch")
                left, right = st.columns(2)
                left.button("More like this", key=f"like-{rank}", width="stretch")
                right.button("Open", key=f"open-{rank}", width="stretch")
