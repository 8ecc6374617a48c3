"""Text every channel shows the same way: times, shortened outputs, remediation history.

Kept in one place so that a page, a Slack message and a mail about the same alert read alike.
"""

from __future__ import annotations

from datetime import UTC, datetime

from alerts.channels.base import AlertNotice, RemediationStep

STEP_OUTPUT = 200  # characters of a remediation step's output shown in a routine notice
FULL_OUTPUT = 2000  # ... and in an escalated notice's full history (PagerDuty caps events at 512 KB)
RECENT_STEPS = 5  # attempts shown before escalation; an escalated notice shows all of them


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marking the cut (receivers reject long fields)."""
    text = text.strip()
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def when(epoch: float | None) -> str:
    """An epoch as ISO 8601 UTC, to the second ("-" when unknown)."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def headline(notice: AlertNotice) -> str:
    """``[FIRING critical] summary`` / ``[ACKNOWLEDGED] ...`` / ``[RESOLVED] ...``."""
    state = notice.state.upper()
    tag = f"{state} {notice.severity}" if notice.state == "firing" else state
    return f"[{tag}] {notice.summary}"


def value_text(notice: AlertNotice) -> str:
    return "-" if notice.value is None else f"{notice.value:g}"


def steps(notice: AlertNotice) -> tuple[RemediationStep, ...]:
    """The attempts a notice shows: the latest few, or every one once remediation gave up."""
    return notice.remediation if notice.escalated else notice.remediation[-RECENT_STEPS:]


def step_line(step: RemediationStep, limit: int = STEP_OUTPUT) -> str:
    output = shorten(" ".join(step.output.split()), limit)
    line = f"#{step.attempt} {when(step.at)} {step.action}: {step.result}"
    return f"{line} ({output})" if output else line


def step_dict(step: RemediationStep, limit: int = STEP_OUTPUT) -> dict[str, object]:
    return {"attempt": step.attempt, "action": step.action, "result": step.result,
            "output": shorten(step.output, limit), "at": when(step.at)}
