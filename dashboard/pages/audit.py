"""Every action taken through the console or the CLI: who, when, what, how it ended."""

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from dashboard import data

st.title("Audit")
entries = data.audit(limit=1000)
if not entries:
    st.info("Nothing has been done through the console or the CLI yet.")
else:
    frame = pd.DataFrame([{
        "when": datetime.fromisoformat(e["at"].replace("Z", "+00:00")).astimezone(UTC),
        "who": e["actor"], "role": e["role"], "through": e["source"], "action": e["action"],
        "cluster": e["cluster"], "result": e["result"], "detail": e["detail"],
        "parameters": ", ".join(f"{k}={v}" for k, v in sorted(e["params"].items()))} for e in entries])
    left, right = st.columns(2)
    sources = left.multiselect("Through", sorted(frame["through"].unique()), key="audit_source")
    results = right.multiselect("Result", sorted(frame["result"].unique()), key="audit_result")
    if sources:
        frame = frame[frame["through"].isin(sources)]
    if results:
        frame = frame[frame["result"].isin(results)]
    st.dataframe(frame, hide_index=True, width="stretch")
