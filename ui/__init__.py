"""Streamlit helpers shared by the pages: the runtime and the signed-in user (``common``,
``auth_session``), and how messages, times, charts and layouts are shown.

``core`` never imports this package; pages do. Everything that turns stored text into something on
screen goes through here, so the rules for rendering it live in one place.
"""
