"""Every cluster at a glance: objectives, backups, lag, alerts, the last drill."""

import streamlit as st

from dashboard import data, ui
from engine.vocabulary import BACKUP_TYPES

st.title("Overview")
rows = data.overview()
if not rows:
    st.info("No cluster is configured.")
for row in rows:
    if row["cluster"] is None:
        st.error("Alerts not tied to a cluster: " + ", ".join(row["firing"]))
        continue
    with st.container(border=True):
        name, rpo, rto, lag, alerts, drill = st.columns([1.3, 1, 1, 1.2, 1.3, 1.2])
        name.subheader(row["cluster"])
        name.caption(f"class **{row['class']}**")
        rpo.metric("RPO exposure", data.duration(row["rpo_exposure"]),
                   help="the oldest committed work not yet safe in the repository")
        ui.level_badge(rpo, row["rpo_level"])
        rpo.caption(f"objective {data.duration(row['rpo_objective'])}")
        rto.metric("Expected RTO", data.duration(row["rto_expected"]),
                   help="restore and replay time at the measured rates")
        ui.level_badge(rto, row["rto_level"])
        rto.caption(f"objective {data.duration(row['rto_objective'])}")
        server = row["server"]
        if server["up"]:
            lag.metric("WAL archive lag", f"{data.duration(server['archive_lag_seconds'])}",
                       help=f"{server['archive_lag_segments'] or 0:.0f} segments waiting")
            lag.caption("replication lag: " + (data.duration(server["replication_lag_seconds"])
                                               if server["replicas"] else "no replica"))
        else:
            lag.metric("PostgreSQL", "down")
            ui.badge(lag, "down", "red")
            lag.caption(server["problem"] or "")
        if row["firing"]:
            alerts.metric("Firing alerts", len(row["firing"]))
            ui.badge(alerts, "firing", "red")
            alerts.caption("; ".join(row["firing"][:3]))
        else:
            alerts.metric("Firing alerts", 0)
            ui.badge(alerts, "none firing", "green")
        last = row["last_drill"]
        if last is None:
            drill.metric("Last drill", "never")
            ui.badge(drill, "never drilled", "gray")
        else:
            drill.metric("Last drill", "passed" if last["passed"] else "failed")
            ui.badge(drill, *(("passed", "green") if last["passed"] else ("failed", "red")))
            drill.caption(f"{data.age(last['finished_at'])}, RTO {data.duration(last['rto_seconds'])}")
        st.caption("Last backup: " + " · ".join(
            f"{kind} {data.age(row['last_backup'].get(kind))}" for kind in BACKUP_TYPES)
            + ("" if row["repository"] == "ok" else f" — repository: {row['repository']}"))
