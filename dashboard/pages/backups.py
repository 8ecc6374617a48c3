"""A cluster's backups, its recovery window per timeline, and starting a backup or a verify."""

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import actions, data, ui
from engine.vocabulary import BACKUP_TYPES

st.title("Backups")
session = ui.session()
cluster = ui.cluster_picker("backups_cluster")
if cluster is not None:
    report = data.repository(cluster)
    if report["status"] != "ok":
        st.warning(f"Repository: {report['status']}")
    verifies = {j["params"].get("backup"): j for j in reversed(data.jobs(cluster, "verify", 200))
                if j["state"] in ("succeeded", "failed")}  # newest last, so it wins

    def verified(backup_id: str) -> str:
        job = verifies.get(backup_id) or verifies.get(None)
        return "never" if job is None else f"{job['state']} {job['finished_at']}"

    rows = [{"id": b["id"], "type": b.get("type"), "started": b.get("started_at"),
             "finished": b.get("finished_at"), "timeline": b.get("timeline"),
             "start LSN": b.get("start_lsn"), "stop LSN": b.get("stop_lsn"),
             "size (MiB)": round((b.get("size_bytes") or 0) / 2**20, 1),
             "stored (MiB)": round((b.get("stored_bytes") or 0) / 2**20, 1),
             "verified": verified(b["id"]), "status": b["status"] if b["status"] == "ok" else b.get("error")}
            | ({"tier": b["tier"], "copies": f"{b['copies']}/{b['replication']}"
                + (" BELOW REPLICATION" if b["below_replication"] else "")} if "tier" in b else {})
            for b in reversed(report["backups"])]
    st.subheader(f"{len(rows)} backups")
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

    st.subheader("Recovery window")
    windows = data.recovery_windows(cluster)
    bars = []
    if windows is not None:
        bars = [{"what": f"timeline {w['timeline']}", "start": w["start"], "end": w["end"],
                 "kind": "recoverable"} for w in windows if w["start"] and w["end"]]
    else:
        st.caption("The recovery window per timeline needs the engine's restore planner; "
                   "showing the backups' own spans.")
    bars += [{"what": f"timeline {b.get('timeline')}", "start": data.parse_iso(b.get("started_at")),
              "end": data.parse_iso(b.get("finished_at")), "kind": f"{b.get('type')} backup"}
             for b in report["backups"] if b["status"] == "ok"]
    if bars:
        figure = px.timeline(pd.DataFrame(bars), x_start="start", x_end="end", y="what", color="kind")
        figure.update_layout(height=120 + 40 * len({b["what"] for b in bars}), margin={"t": 10, "b": 10})
        st.plotly_chart(figure, width="stretch")
    else:
        st.info("Nothing is recoverable yet: take a backup.")
    for r in report["archive"]:
        st.caption(f"WAL archive, timeline {r['timeline']}: {r['first']} .. {r['last']} "
                   f"({r['segments']} segments)")

    if session is not None and session.may("operator"):
        st.subheader("Start")
        left, right = st.columns(2)
        with left.form("start_backup"):
            kind = st.selectbox("Backup type", BACKUP_TYPES, key="backup_type")
            if st.form_submit_button("Start backup"):
                ui.act(lambda: actions.start_job(data.context(), ui.session(), "backup", cluster,
                                                 {"type": kind}), "Backup queued as job {result}.")
        with right.form("start_verify"):
            options = ["every backup", *[b["id"] for b in reversed(report["backups"])]]
            which = st.selectbox("Verify", options, key="verify_backup")
            if st.form_submit_button("Start verify"):
                params = {} if which == options[0] else {"backup": which}
                ui.act(lambda: actions.start_job(data.context(), ui.session(), "verify", cluster, params),
                       "Verify queued as job {result}.")
    st.subheader("Recent backup and verify jobs")
    recent = [j for j in data.jobs(cluster, limit=100) if j["kind"] in ("backup", "verify")][:20]
    if recent:
        st.dataframe(pd.DataFrame([{"job": j["id"], "kind": j["kind"], "state": j["state"],
                                    "progress": j["progress"], "asked by": j["requested_by"],
                                    "created": j["created_at"], "error": j["error"]} for j in recent]),
                     hide_index=True, width="stretch")
