"""Optimus entrypoint: ``streamlit run app.py``. Router and start-up gate; pages live in ``pages/``."""

import logging

import streamlit as st

from core.errors import AppError

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("alembic").setLevel(logging.WARNING)

st.set_page_config(page_title="Optimus", page_icon=":material/neurology:", layout="wide")

try:
    from pages.common import degraded_banner, get_runtime

    runtime = get_runtime()
except AppError as exc:  # bad settings or unreachable storage: say what to fix, no traceback
    st.title("Optimus cannot start")
    st.error(exc.message, icon=":material/error:")
    st.stop()

degraded_banner(runtime)
page = st.navigation([st.Page("pages/home.py", title="Home", icon=":material/home:", default=True)])
page.run()
