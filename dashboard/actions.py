"""Everything the console asks for, each checked here, on the server, whatever a page shows.

Each action re-checks the session (expired, user removed, role changed in the
configuration) and the role it needs, records an audit entry (source ``console``; a refusal
as ``refused``, with why) and then takes the engine's one request path:
:func:`engine.jobs.enqueue` for work (the agent runs it, never the console's process),
:mod:`alerts.operations` for acknowledging and silencing, the engine's planner for a
restore's checks. Nothing here decides what the CLI would decide differently.

Viewers may do none of it; operators start backups, verifies, drills, previews and restores
into new directories, cancel jobs and acknowledge or silence alerts; admins also restore in
place.
"""

from __future__ import annotations

from typing import Any

from dashboard.auth import SOURCE, Session, current
from engine.context import Context
from engine.errors import LifeboatError

#: The role each action needs (a restore in place needs an admin: :func:`start_restore`).
NEEDS = {"backup": "operator", "verify": "operator", "drill": "operator", "preview": "operator",
         "restore": "operator", "restore.in_place": "admin", "cancel": "operator",
         "alerts.ack": "operator", "alerts.silence": "operator"}


class Refused(Exception):
    """The console will not do it; already recorded in the audit trail. ``str()`` says why."""


def _record(ctx: Context, session: Session | None, action: str, result: str, cluster: str | None,
            params: dict[str, Any], detail: str = "") -> None:
    ctx.catalog.audit.record(session.user if session else "anonymous", SOURCE, action, result,
                             cluster, params, detail, session.role if session else None)


def _refuse(ctx: Context, session: Session | None, action: str, cluster: str | None,
            params: dict[str, Any], why: str) -> Refused:
    _record(ctx, session, action, "refused", cluster, params, why)
    return Refused(why)


def authorize(ctx: Context, session: Session | None, action: str, cluster: str | None = None,
              params: dict[str, Any] | None = None) -> Session:
    """The live session when it may do ``action``; else the refusal is recorded and raised."""
    params = params or {}
    live, why = current(session, ctx.config.console)
    if live is None:
        raise _refuse(ctx, session, action, cluster, params, why or "not logged in")
    need = NEEDS[action]
    if not live.may(need):
        raise _refuse(ctx, live, action, cluster, params,
                      f"a {live.role} may not do this ({action} needs the {need} role)")
    return live


def _by(session: Session) -> str:
    return f"{session.user}@console"


def _enqueue(ctx: Context, session: Session, action: str, kind: str, cluster: str,
             params: dict[str, Any]) -> int:
    from engine import jobs

    try:
        job_id = jobs.enqueue(ctx.catalog, ctx.config, kind, cluster, params, _by(session))
    except LifeboatError as exc:
        raise _refuse(ctx, session, action, cluster, params, str(exc)) from None
    _record(ctx, session, action, "queued", cluster, params, f"job {job_id}")
    return job_id


def start_job(ctx: Context, session: Session | None, kind: str, cluster: str,
              params: dict[str, Any]) -> int:
    """Queue a backup, verify or drill of ``cluster``; returns the job id."""
    if kind not in ("backup", "verify", "drill"):
        raise ValueError(f"start_job: {kind} is not a backup, verify or drill")
    live = authorize(ctx, session, kind, cluster, params)
    return _enqueue(ctx, live, kind, kind, cluster, params)


def plan_restore(ctx: Context, params: dict[str, Any]) -> Any:
    """The engine's plan of a restore of ``ctx.cluster`` (RestorePlan); UsageError when the
    parameters cannot make sense. A read: nothing is recorded."""
    from engine.jobs import RestoreParams
    from engine.restore.plan import plan_restore as plan

    return plan(ctx, RestoreParams.model_validate(params))


def start_restore(ctx: Context, session: Session | None, params: dict[str, Any], confirmation: str,
                  in_place_confirmed: bool = False) -> int:
    """Queue the restore ``params`` ask for, of ``ctx.cluster``, after planning it again now:
    refused (and recorded) unless the typed ``confirmation`` is the cluster's name, the plan
    has no problems, and a restore in place is asked by an admin who confirmed it."""
    cluster = ctx.require_cluster()
    live = authorize(ctx, session, "restore", cluster, params)
    try:
        plan = plan_restore(ctx, params)
    except ImportError:
        raise _refuse(ctx, live, "restore", cluster, params,
                      "restores need the engine's restore planner, which is not installed") from None
    except LifeboatError as exc:
        raise _refuse(ctx, live, "restore", cluster, params, str(exc)) from None
    if plan.in_place:
        if not live.may(NEEDS["restore.in_place"]):
            raise _refuse(ctx, live, "restore", cluster, params,
                          f"a {live.role} may not restore in place (it needs the admin role)")
        if not in_place_confirmed:
            raise _refuse(ctx, live, "restore", cluster, params,
                          "restoring in place replaces the cluster's data: confirm it first")
    if confirmation.strip() != cluster:
        raise _refuse(ctx, live, "restore", cluster, params,
                      f"the confirmation does not match: type the cluster's name, '{cluster}'")
    if plan.problems:
        raise _refuse(ctx, live, "restore", cluster, params,
                      "the plan cannot run: " + "; ".join(plan.problems))
    return _enqueue(ctx, live, "restore", "restore", cluster, params)


def start_preview(ctx: Context, session: Session | None, params: dict[str, Any]) -> int:
    """Queue a preview (the restore's target into a scratch cluster, a table's first rows)."""
    from engine.jobs import PARAMS

    cluster = ctx.require_cluster()
    live = authorize(ctx, session, "preview", cluster, params)
    if "preview" not in PARAMS:
        raise _refuse(ctx, live, "preview", cluster, params,
                      "previews need the engine's preview job, which is not installed")
    if not str(params.get("table") or "").strip():
        raise _refuse(ctx, live, "preview", cluster, params, "name a table to preview")
    return _enqueue(ctx, live, "preview", "preview", cluster, params)


def cancel(ctx: Context, session: Session | None, job_id: int) -> Any:
    """Cancel a queued or running job (the agent stops its process)."""
    from engine import jobs

    found = ctx.catalog.job(job_id)
    cluster = found.cluster if found else None
    live = authorize(ctx, session, "cancel", cluster, {"job": job_id})
    cancel_job = getattr(jobs, "cancel_job", None)
    if cancel_job is None:
        raise _refuse(ctx, live, "cancel", cluster, {"job": job_id},
                      "cancelling needs the engine's cancel_job, which is not installed")
    try:
        result = cancel_job(ctx.catalog, job_id, _by(live))
    except LifeboatError as exc:
        raise _refuse(ctx, live, "cancel", cluster, {"job": job_id}, str(exc)) from None
    _record(ctx, live, "cancel", "ok" if result is not False else "failed", cluster, {"job": job_id},
            "" if result is not False else "the job had already ended")
    return result


def acknowledge(ctx: Context, session: Session | None, alert_id: int) -> Any:
    """Acknowledge an open alert, as ``lifeboat alerts ack`` does."""
    from alerts.lifecycle import AlertClosed, UnknownAlert
    from alerts.operations import acknowledge as ack

    alert = ctx.catalog.alerts.get(alert_id)
    cluster = alert.cluster if alert else None
    params = {"alert": alert_id}
    live = authorize(ctx, session, "alerts.ack", cluster, params)
    try:
        done = ack(ctx, alert_id, _by(live))
    except (UnknownAlert, AlertClosed) as exc:
        raise _refuse(ctx, live, "alerts.ack", cluster, params, str(exc)) from None
    problem = done.problem or ", ".join(f"{d.channel} was not told ({d.outcome})" for d in done.failed)
    _record(ctx, live, "alerts.ack", "ok", cluster, params, problem)
    return done


def silence(ctx: Context, session: Session | None, rule: str, cluster: str | None, seconds: float,
            reason: str) -> Any:
    """Silence ``rule`` (on ``cluster``, or everywhere) for ``seconds``."""
    from alerts.operations import silence as add

    params = {"rule": rule, "seconds": seconds, "reason": reason}
    live = authorize(ctx, session, "alerts.silence", cluster, params)
    try:
        done = add(ctx, rule, cluster, seconds, reason, _by(live))
    except LifeboatError as exc:
        raise _refuse(ctx, live, "alerts.silence", cluster, params, str(exc)) from None
    _record(ctx, live, "alerts.silence", "ok", cluster, params, f"silence {done.id}")
    return done
