"""The search page: Streamlit views over clipsearch.library. The only package of clipsearch that imports
Streamlit; streamlit_app.py runs it."""
