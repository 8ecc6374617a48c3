"""The one-click restore: cluster -> point -> destination -> the plan -> preview -> type the
name -> restore, followed live; restores running and finished, with cancel."""

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from dashboard import actions, data, ui
from engine.errors import LifeboatError

FINAL = ("succeeded", "failed", "cancelled")
PRIMARY = "(primary)"  # no region is named so: region names have no parentheses
st.title("Restore")
session = ui.session()
operator = session is not None and session.may("operator")
admin = session is not None and session.may("admin")
names = data.clusters()
cluster = st.selectbox("Cluster", names, key="restore_cluster", bind="query-params") if names else None


def naive(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(tzinfo=None)


def pick_region() -> str | None:
    """Where to restore from: the primary repository, or a region's copy (shown only when
    copies are configured). None: the primary."""
    regions = data.regions()
    if not regions:
        return None
    labels = {PRIMARY: f"The primary repository ({data.context().config.repository.region})",
              **{r: f"The copy in region {r}" for r in regions}}
    chosen = st.radio("Restore from", list(labels), format_func=labels.get, horizontal=True,
                      key="restore_region", bind="query-params")
    if chosen == PRIMARY:
        return None
    st.caption(f"The backup and the WAL recovery replays both come from the copy in {chosen}: "
               "choose it when the primary region is lost.")
    return chosen


def pick_point(cluster: str, region: str | None) -> dict | None:
    """The recovery target fields, or None when the point cannot be chosen."""
    kinds = {"latest": "Latest", "time": "A date and time", "name": "A named restore point",
             "expert": "Transaction id or LSN (experts)"}
    kind = st.radio("Restore to", list(kinds), format_func=kinds.get, horizontal=True,
                    key="restore_point", bind="query-params")
    if kind == "latest":
        return {"target": "latest"}
    if kind == "time":
        try:
            windows = [w for w in data.recovery_windows(cluster, region) or [] if w["start"] and w["end"]]
        except LifeboatError as exc:  # the region's copy cannot be read: say which and why
            st.error(str(exc))
            return None
        if not windows:
            st.error("Nothing in the repository can be reached at a point in time yet: take a backup.")
            return None
        labels = [f"timeline {w['timeline']}: {w['start']:%Y-%m-%d %H:%M:%S} .. "
                  f"{w['end']:%Y-%m-%d %H:%M:%S} UTC" for w in windows]
        chosen = windows[labels.index(st.selectbox("Recovery window", labels, index=len(labels) - 1,
                                                   key="restore_window"))]
        low, high = naive(chosen["start"]), naive(chosen["end"])
        st.caption(f"Pick a time from {low:%Y-%m-%d %H:%M:%S} to {high:%Y-%m-%d %H:%M:%S} UTC.")
        day_field, clock_field = st.columns([1, 1])
        day = day_field.date_input("Date (UTC)", value=high.date(), min_value=low.date(),
                                   max_value=high.date(), format="YYYY-MM-DD", key="restore_day",
                                   bind="query-params")
        clock = clock_field.time_input("Time (UTC, to the second)", value=high.time().replace(microsecond=0),
                                       step=1, key="restore_clock", bind="query-params")
        at, problem = data.point_in_window(day, clock, chosen["start"], chosen["end"])
        if problem:
            st.error(problem)
            return None
        return {"target": "time", "target_value": at.isoformat(), "target_timeline": str(chosen["timeline"])}
    if kind == "name":
        try:
            points = data.named_points(cluster, region) or []
        except LifeboatError as exc:
            st.error(str(exc))
            return None
        if not points:
            st.info("No named restore point exists (lifeboat restore-point --cluster C NAME makes one).")
            return None
        label = {p["name"]: f"{p['name']} ({p['time']:%Y-%m-%d %H:%M:%S} UTC)" if p["time"] else p["name"]
                 for p in points}
        name = st.selectbox("Restore point", list(label), format_func=label.get, key="restore_name")
        return {"target": "name", "target_value": name}
    which = st.radio("Target", ["xid", "lsn"], horizontal=True, key="restore_expert")
    value = st.text_input("Transaction id" if which == "xid" else "LSN (e.g. 0/3000060)", key="restore_value")
    exclusive = st.checkbox("Stop just before the target", key="restore_exclusive")
    if not value.strip():
        return None
    return {"target": which, "target_value": value.strip(), "target_exclusive": exclusive}


def pick_destination(cluster: str) -> tuple[dict, bool] | None:
    settings = data.context().config.clusters[cluster]
    places = ["new"] + (["in_place"] if admin else [])
    place = st.radio("Destination", places, horizontal=True, key="restore_place", format_func={
        "new": "A new data directory", "in_place": "In place (replaces the cluster's data)"}.get)
    if place == "in_place":
        st.warning(f"Restoring in place stops {cluster}'s server, replaces {settings.pgdata} and holds "
                   "its scheduled jobs until the restore ends.")
        confirmed = st.checkbox(f"I understand: {cluster}'s current data is replaced",
                                key="restore_in_place_ok")
        return {"pgdata": str(settings.pgdata), "port": settings.port, "archive_mode": "preserve",
                "stop_server": True}, confirmed
    default = f"{settings.pgdata.parent}/{cluster}-restored-{datetime.now(UTC):%Y%m%d-%H%M}"
    pgdata = st.text_input("New data directory", value=default, key="restore_pgdata", bind="query-params")
    port = st.number_input("Port", min_value=1, max_value=65535, value=min(65535, settings.port + 1),
                           key="restore_port", bind="query-params")
    # a copy must not archive into the original's archive
    return {"pgdata": pgdata.strip(), "port": int(port), "archive_mode": "off"}, False


def show_plan(plan) -> None:
    left, middle, right = st.columns(3)
    left.metric("Backup", plan.backup_id or "-",
                help=f"{plan.backup_type}, finished {plan.backup_finished_at}"
                     + (f", in the {plan.tier} tier" if getattr(plan, "tier", None) else ""))
    middle.metric("Expected duration", data.duration(plan.expected_seconds), help=plan.expected_basis)
    right.metric("To write", f"{(plan.restore_bytes or 0) / 2**20:,.0f} MiB")
    st.markdown(
        (f"- **From**: {plan.source}\n" if plan.region else "")
        + f"- **Point**: {plan.target} on timeline {plan.timeline}\n"
        f"- **WAL**: {plan.wal_first or '-'} .. {plan.wal_last or '-'} ({plan.wal_segments} segments, "
        f"{(plan.wal_bytes or 0) / 2**20:,.0f} MiB to replay)\n"
        f"- **Destination**: {plan.destination} ({plan.destination_state}; "
        f"{(plan.destination_free_bytes or 0) / 2**30:,.1f} GiB free)"
        + (" — **in place**, the server is stopped first" if plan.in_place else "") + "\n"
        f"- **Port**: {plan.port} ({'free' if plan.port_free else 'in use'})\n"
        f"- **PostgreSQL**: backup {plan.pg_version}, binaries {plan.bin_version}\n"
        "- **Tablespaces**: " + (", ".join(f"{t.oid} -> {t.destination} ({'ok' if t.ok else t.why})"
                                           for t in plan.tablespaces) or "none"))
    for warning in plan.warnings:
        st.warning(warning)
    for problem in plan.problems:
        st.error(problem)


def follow(key: str, title: str) -> None:
    """A progress bar following the job whose id is in session state ``key``: its phase
    (writing files with bytes, starting the server, replaying WAL), then its result."""
    job_id = st.session_state.get(key)
    if job_id is None:
        return

    def draw(job: dict) -> None:
        st.progress(data.job_percent(job) / 100, text=data.progress_text(job, title))
        if job["state"] in FINAL:
            show_result(job)
            if job["state"] == "succeeded":
                st.success(f"{title} job {job_id} finished: 100%")
            else:
                st.error(f"{title} job {job_id} {job['state']}: {job['error'] or ''}")

    job = data.job(job_id)
    if job is None or job["state"] in FINAL:
        if job is not None:
            draw(job)
        return

    @st.fragment(run_every=0.5)
    def live() -> None:
        now = data.job(job_id)
        if now is not None and now["state"] in FINAL:
            data.refresh()
            st.rerun()  # the whole page: the result, and the list of restores, drawn once
        if now is not None:
            draw(now)
            if (operator and st.button(f"Cancel job {job_id}", key=f"cancel_live_{job_id}")
                    and ui.act(lambda: actions.cancel(data.context(), ui.session(), job_id),
                               f"Job {job_id} cancelled.") is not None):
                st.rerun()
    live()


def show_result(job: dict) -> None:
    result = job.get("result") or {}
    if not result:
        return
    if job["kind"] == "preview":
        st.markdown(f"**{result.get('database')}.{result.get('table')}** at "
                    f"{data.point_text(result.get('point_reached'))}: **{result.get('row_count')} rows**")
        rows = result.get("rows") or []
        order = ", ".join(result.get("ordered_by") or []) or "no primary key: in storage order"
        st.caption(f"The first {len(rows)} rows (ordered by {order})"
                   + ("; long values were cut" if result.get("truncated") else ""))
        st.table(pd.DataFrame(rows, columns=result.get("columns") or None), hide_index=True)
        return
    for label, text in data.restore_outcome(result):
        st.markdown(f"**{label}**: {text}")


if cluster is not None:
    if data.planner() is None:
        st.warning("Restoring from the console needs the engine's restore planner "
                   "(engine/restore/plan.py), which is not installed in this version.")
    elif not operator:
        st.info("You can read restores here; starting one needs the operator role.")
    else:
        st.header("1. Point")
        region = pick_region()
        point = pick_point(cluster, region)
        st.header("2. Destination")
        destination = pick_destination(cluster)
        params, in_place_ok = None, False
        if point is not None and destination is not None:
            place, in_place_ok = destination
            params = {**point, **place, "start": True, **({"region": region} if region else {})}
        st.header("3. Plan")
        if st.button("Plan the restore", key="restore_plan_button", disabled=params is None):
            try:
                plan = actions.plan_restore(data.for_cluster(cluster), params)
                st.session_state["restore_plan"] = (cluster, params, plan)
            except LifeboatError as exc:
                st.session_state.pop("restore_plan", None)
                st.error(str(exc))
        planned = st.session_state.get("restore_plan")
        if planned is not None and planned[:2] != (cluster, params):
            st.session_state.pop("restore_plan")  # the choices changed: plan again
            planned = None
        if planned is not None:
            plan = planned[2]
            show_plan(plan)
            if data.preview_available():
                with st.expander("4. Preview a table at that point (optional)"):
                    table = st.text_input("Table (schema.table)", key="preview_table")
                    rows = st.number_input("Rows", min_value=1, max_value=1000, value=20, key="preview_rows")
                    if st.button("Preview", key="preview_button"):
                        fields = {k: v for k, v in params.items()
                                  if k in ("target", "target_value", "target_exclusive", "target_timeline")}
                        job_id = ui.act(lambda: actions.start_preview(
                            data.for_cluster(cluster), ui.session(),
                            {**fields, "table": table, "rows": int(rows)}), "Preview queued as job {result}.")
                        if job_id is not None:
                            st.session_state["preview_job"] = job_id
                    follow("preview_job", "Preview")
            st.header("5. Restore")
            confirmation = st.text_input(f"Type the cluster's name ({cluster}) to confirm",
                                         key="restore_confirm")
            if st.button("Restore", key="restore_start", type="primary"):
                job_id = ui.act(lambda: actions.start_restore(data.for_cluster(cluster), ui.session(), params,
                                                              confirmation, in_place_ok),
                                "Restore queued as job {result}.")
                if job_id is not None:
                    st.session_state["restore_job"] = job_id
                    st.session_state.pop("restore_plan", None)
        follow("restore_job", "Restore")

    st.header("Restores")
    found = data.jobs(cluster, "restore", 50)
    if not found:
        st.caption("No restore of this cluster yet.")
    for job in found:
        reached = data.point_text((job.get("result") or {}).get("reached"), short=True)
        with st.expander(f"Job {job['id']} · {job['state']} · {job['progress']}% · "
                         f"by {job['requested_by']} · "
                         f"{job['params'].get('target')} {job['params'].get('target_value') or ''} -> "
                         f"{job['params'].get('pgdata')}"
                         + (f" from region {job['params']['region']}" if job["params"].get("region") else "")
                         + f" · reached {reached}"):
            if job["error"]:
                st.error(job["error"])
            show_result(job)
            events = data.job_events(job["id"])
            if events:
                st.markdown("**Events**")
                st.dataframe(pd.DataFrame(events), hide_index=True, width="stretch")
            log = data.job_log(job["id"])
            st.markdown("**Log**")
            st.code(log if log is not None else "(no log on this host yet)", language=None)
            if operator and job["state"] not in FINAL and st.button("Cancel", key=f"cancel_{job['id']}"):
                ui.act(lambda job_id=job["id"]: actions.cancel(data.context(), ui.session(), job_id),
                       f"Job {job['id']} cancelled.")
