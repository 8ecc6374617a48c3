"""Restore drills: results over time, failed checks, measured RTO against the objective, the
stored reports; start a drill (operators)."""

from datetime import UTC, datetime

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import actions, data, ui
from engine.vocabulary import DRILL_KINDS

st.title("Drills")
session = ui.session()
cluster = ui.cluster_picker("drills_cluster")
if cluster is not None:
    found = data.drills(cluster)
    objective = data.context().config.clusters[cluster].rto_objective
    if not found:
        st.info("No drill has run for this cluster yet.")
    else:
        figure = go.Figure()
        figure.add_trace(go.Scatter(
            x=[datetime.fromtimestamp(d["finished_at"], UTC) for d in found],
            y=[d["rto_seconds"] for d in found], mode="markers+lines", name="measured RTO (s)",
            marker={"color": ["green" if d["passed"] else "red" for d in found], "size": 10}))
        figure.add_hline(y=objective, line_dash="dash", annotation_text=f"RTO objective {objective:g}s")
        figure.update_layout(height=300, margin={"t": 20, "b": 20}, yaxis_title="seconds")
        st.plotly_chart(figure, width="stretch")
        st.dataframe(pd.DataFrame([{
            "drill": d["id"], "kind": d["kind"], "finished": datetime.fromtimestamp(d["finished_at"], UTC),
            "passed": d["passed"], "RTO (s)": d["rto_seconds"], "objective (s)": objective,
            "failed checks": ", ".join(c["name"] for c in d["result"].get("checks", []) if not c["passed"])}
            for d in found]), hide_index=True, width="stretch")
        for d in found:
            failed = [c for c in d["result"].get("checks", []) if not c["passed"]]
            with st.expander(f"Drill {d['id']} ({d['kind']}): {'passed' if d['passed'] else 'failed'}",
                             expanded=False):
                for check in failed:
                    st.error(f"{check['name']}: {check['detail']}")
                st.code(d["report"], language=None)
    if session is not None and session.may("operator"):
        with st.form("start_drill"):
            kind = st.selectbox("Drill kind", DRILL_KINDS, key="drill_kind")
            if st.form_submit_button("Start drill"):
                ui.act(lambda: actions.start_job(data.context(), ui.session(), "drill", cluster,
                                                 {"kind": kind}), "Drill queued as job {result}.")
