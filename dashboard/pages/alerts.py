"""Firing and recent alerts with their notifications and remediation attempts; acknowledge
and silence (operators)."""

import pandas as pd
import streamlit as st

from dashboard import actions, data, ui
from engine.config.units import parse_duration

st.title("Alerts")
session = ui.session()
operator = session is not None and session.may("operator")
found = data.alerts()
open_alerts = [a for a in found if a["resolved_at"] is None]
st.subheader(f"Open ({len(open_alerts)})")
if not open_alerts:
    st.success("Nothing is firing.")
for a in found:
    # a Material icon and the severity's colour: emoji are boxes where no emoji font is installed
    icon = {"critical": ":red[:material/error:]", "warning": ":orange[:material/warning:]"}.get(
        a["severity"], ":blue[:material/info:]")
    title = (f"{icon} {a['severity'].upper()} {a['rule']} · {a['cluster'] or 'every cluster'} · {a['state']}"
             + (f" · resolved {a['resolved_at']}" if a["resolved_at"] else ""))
    with st.expander(title, expanded=a["resolved_at"] is None):
        st.write(a["annotations"].get("summary", ""))
        if a["annotations"].get("description"):
            st.caption(a["annotations"]["description"])
        value = "" if a["value"] is None else f" · value {a['value']}"  # a synthetic alert has none
        st.caption(f"since {a['firing_since'] or a['first_seen']}{value} · severity {a['severity']}")
        if a["acknowledged_by"]:
            st.caption(f"acknowledged by {a['acknowledged_by']} at {a['acknowledged_at']}")
        if a["silence_reason"]:
            st.caption(f"silenced until {a['silenced_until']}: {a['silence_reason']}")
        if a["remediation"]:
            st.markdown("**Remediation attempts**")
            st.dataframe(pd.DataFrame([{"round": r["round"], "action": r["action"], "result": r["result"],
                                        "output": r["output"][:300]} for r in a["remediation"]]),
                         hide_index=True, width="stretch")
        if a["notifications"]:
            st.markdown("**Notifications**")
            st.dataframe(pd.DataFrame([{"channel": n["channel"], "kind": n["kind"], "outcome": n["outcome"],
                                        "attempts": n["attempts"], "detail": n["detail"]}
                                       for n in a["notifications"]]), hide_index=True, width="stretch")
        open_unacked = operator and a["resolved_at"] is None and a["state"] != "acknowledged"
        if open_unacked and st.button("Acknowledge", key=f"ack_{a['id']}"):
            ui.act(lambda alert_id=a["id"]: actions.acknowledge(data.context(), ui.session(), alert_id),
                   f"Alert {a['id']} acknowledged.")

if operator:
    st.subheader("Silence a rule")
    with st.form("silence"):
        rule = st.selectbox("Rule", data.rules(), key="silence_rule")
        scope = st.selectbox("Cluster", ["every cluster", *data.clusters()], key="silence_cluster")
        length = st.text_input("For", value="2h", key="silence_for")
        reason = st.text_input("Reason", key="silence_reason")
        if st.form_submit_button("Silence"):
            try:
                seconds = parse_duration(length)
            except ValueError as exc:
                st.error(f"For: {exc}")
            else:
                ui.act(lambda: actions.silence(data.context(), ui.session(), rule,
                                               None if scope == "every cluster" else scope, seconds, reason),
                       "Silenced.")
active = data.silences()
if active:
    st.subheader("Active silences")
    st.dataframe(pd.DataFrame([{"rule": s["rule"], "cluster": s["cluster"] or "every cluster",
                                "by": s["created_by"], "reason": s["reason"]} for s in active]),
                 hide_index=True, width="stretch")
