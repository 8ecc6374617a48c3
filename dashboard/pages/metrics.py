"""Charts from Prometheus over a chosen time range; the catalog's own figures when
Prometheus cannot be read."""

import math
import time
from datetime import UTC, datetime

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import data

RANGES = {"1 hour": 3600, "6 hours": 6 * 3600, "24 hours": 86400, "7 days": 7 * 86400, "30 days": 30 * 86400}
CHARTS = [
    ("Backup success rate", "lifeboat_backup_success_ratio", "ratio"),
    ("Data-loss events", "sum by (cluster, cause) (lifeboat_data_loss_events_total)", "events"),
    ("WAL archive lag", "lifeboat_wal_archive_lag_seconds", "seconds"),
    ("Replication lag", "lifeboat_replication_lag_seconds", "seconds"),
    ("Repository bytes per tier", "sum by (cluster, tier) (lifeboat_repository_bytes)", "bytes"),
    ("RPO exposure against the objective",
     'label_replace(lifeboat_rpo_exposure_seconds, "series", "exposure", "", "") or '
     'label_replace(lifeboat_rpo_objective_seconds, "series", "objective", "", "")', "seconds"),
    ("Expected RTO against the objective",
     'label_replace(lifeboat_rto_expected_seconds, "series", "expected", "", "") or '
     'label_replace(lifeboat_rto_objective_seconds, "series", "objective", "", "")', "seconds"),
]
HISTOGRAM = "sum by (le) (lifeboat_recovery_duration_seconds_bucket)"
FALLBACK = {
    "lifeboat_backup_success_ratio": "Backup success rate",
    "lifeboat_backups_total": "Backups (count)",
    "lifeboat_data_loss_events_total": "Data-loss events",
    "lifeboat_rpo_exposure_seconds": "RPO exposure (s)",
    "lifeboat_rpo_objective_seconds": "RPO objective (s)",
    "lifeboat_rto_expected_seconds": "Expected RTO (s)",
    "lifeboat_rto_objective_seconds": "RTO objective (s)",
    "lifeboat_recovery_duration_seconds_count": "Recoveries measured",
    "lifeboat_drill_last_passed": "Last drill passed",
}

st.title("Metrics")
span = RANGES[st.segmented_control("Time range", list(RANGES), default="24 hours", key="metrics_range")
              or "24 hours"]
# to 5 s (reads within a run share the cache; the last minute's samples are not left out)
end = float(int(time.time() // 5 * 5))
start, step = end - span, max(15, span // 240)
x_range = [datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)]


def series_frame(results: list[dict]) -> pd.DataFrame:
    rows = []
    for r in results:
        name = ", ".join(f"{k}={v}" for k, v in sorted(r["labels"].items()) if k != "__name__") or "value"
        rows += [{"time": t, "value": v, "series": name}
                 for t, v in zip(r["times"], r["values"], strict=True)]
    return pd.DataFrame(rows, columns=["time", "value", "series"])


def _figure(value: float | None) -> str:
    """A figure as text: "—" where there is none (the success rate of a type never run)."""
    if value is None or math.isnan(value):
        return "—"
    return f"{int(value):,}" if value.is_integer() else f"{value:,.4f}".rstrip("0")


try:
    first = data.prometheus_range(CHARTS[0][1], start, end, step)
except data.PrometheusDown as exc:
    st.warning(f"{exc}. Showing the catalog's own figures instead (no history).")
    figures = data.catalog_figures()
    rows = [{"figure": label, "labels": ", ".join(labels),
             "value": _figure(value)}
            for name, label in FALLBACK.items() for labels, value in sorted(figures.get(name, {}).items())]
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    else:
        st.info("The catalog holds no figures yet.")
else:
    st.caption(f"From Prometheus at {data.prometheus_url()}")
    columns = st.columns(2)
    for i, (title, query, unit) in enumerate(CHARTS):
        with columns[i % 2]:
            try:
                results = first if i == 0 else data.prometheus_range(query, start, end, step)
            except data.PrometheusDown as exc:
                st.warning(f"{title}: {exc}")
                continue
            frame = series_frame(results)
            if frame.empty:
                st.caption(f"{title}: no data in this range")
                continue
            figure = px.line(frame, x="time", y="value", color="series", title=title)
            figure.update_layout(height=280, margin={"t": 40, "b": 10}, yaxis_title=unit, showlegend=True)
            figure.update_xaxes(range=x_range)  # the range chosen, however little data it holds
            st.plotly_chart(figure, width="stretch")
    try:
        buckets = data.prometheus_range(HISTOGRAM, end - step, end, step)
    except data.PrometheusDown as exc:
        buckets = []
        st.warning(f"Recovery times: {exc}")
    rows = [{"le": r["labels"].get("le"), "recoveries": r["values"][-1]} for r in buckets if r["values"]]
    if rows:
        frame = pd.DataFrame(rows)
        frame["bound"] = pd.to_numeric(frame["le"].replace("+Inf", "inf"))
        frame = frame.sort_values("bound")
        st.plotly_chart(px.bar(frame, x="le", y="recoveries", title="Recovery time (cumulative buckets, s)"),
                        width="stretch")
