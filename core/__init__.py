"""Optimus core: everything the app, the API and the CLI share. Never imports streamlit."""
