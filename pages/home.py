"""Home: what this Optimus instance is running on, and whether every part of it is healthy."""

import streamlit as st

from ui.common import get_runtime, human_bytes, require_admin
from ui.layout import health_rows

runtime = get_runtime()
require_admin()  # the router lists it for admins only; this covers a hand-typed URL
report = runtime.health()

st.title("Optimus")
st.caption("A chat that remembers — self-hosted, private by default.")

badge = {"ok": ":green-badge[Healthy]", "degraded": ":orange-badge[Degraded]", "down": ":red-badge[Down]"}[report.status]
mode_text = {
    "embedded": "Embedded — SQLite and Qdrant Edge in the data directory; nothing leaves this machine.",
    "ephemeral": "Ephemeral — a clean slate in a temporary directory, wiped when the server stops.",
    "server": "Server — PostgreSQL and a Qdrant server cluster.",
}[report.mode]
st.subheader("System health")
st.markdown(f"{badge} &nbsp; **Storage mode:** `{report.mode}` — {mode_text}")
if report.requested_mode != report.mode:
    st.markdown(f"Configured mode was `{report.requested_mode}`; see the warning above.")

cols = st.columns(len(report.counts))
for col, (name, value) in zip(cols, report.counts.items(), strict=False):
    col.metric(name.replace("_", " ").capitalize(), f"{value:,}")
sizes = st.columns(len(report.counts))
sizes[0].metric("Database size", human_bytes(report.sizes.get("database_bytes", 0)))
sizes[1].metric("Data directory", human_bytes(report.sizes.get("data_dir_bytes", 0)))

with st.container(border=True, key="health_components"):
    health_rows(report.components)
st.caption(f"Checked {report.checked_at:%Y-%m-%d %H:%M:%S} UTC.")
if st.button("Check again", icon=":material/refresh:"):
    st.rerun()
