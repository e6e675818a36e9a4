"""clipsearch's page: `streamlit run streamlit_app.py`. The views are in clipsearch.app."""

from clipsearch.app.main import run

run()
