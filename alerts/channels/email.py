"""Mail through an SMTP relay (``smtplib``), threaded per alert.

The firing mail's ``Message-ID`` is derived from the alert's key and start, so it is the same
on every attempt and can be rebuilt when the router lost the ref; the acknowledgement and the
resolution carry ``In-Reply-To``/``References`` to it, and mail clients show one thread per
incident. SMTP says itself whether to retry: 4xx replies are transient, 5xx are not.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl as tls
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from alerts.channels.base import AlertNotice, Delivery, Outcome, redact
from alerts.channels.text import FULL_OUTPUT, headline, shorten, step_line, steps, value_text, when


class EmailChannel:
    """Mails notices to ``recipients`` through the SMTP server at ``host``:``port``."""

    name = "email"

    def __init__(self, host: str, port: int, sender: str, recipients: list[str],
                 username: str | None = None, password: str | None = None,
                 starttls: bool = False, ssl: bool = False, timeout: float = 10.0) -> None:
        if starttls and ssl:
            raise ValueError("starttls and ssl exclude each other (ssl is SMTPS from the start)")
        if not recipients:
            raise ValueError("EmailChannel needs at least one recipient")
        self.host, self.port, self.sender, self.recipients = host, port, sender, list(recipients)
        self.username, self.password = username, password
        self.secrets = [password]  # what no Delivery.detail may show
        self.starttls, self.ssl, self.timeout = starttls, ssl, timeout
        self.domain = sender.rpartition("@")[2] or "lifeboat.local"

    def send(self, notice: AlertNotice) -> Delivery:
        mail = self.compose(notice)
        try:
            refused = self._submit(mail)
        except smtplib.SMTPRecipientsRefused as exc:  # every recipient refused
            codes = [code for code, _ in exc.recipients.values()]
            transient = all(400 <= code < 500 for code in codes)
            return self._delivery(Outcome.RETRYABLE if transient else Outcome.FAILED,
                                  f"recipients refused: {_refusals(exc.recipients)}")
        except smtplib.SMTPAuthenticationError as exc:
            return self._delivery(Outcome.FAILED, f"authentication failed: SMTP {exc.smtp_code}")
        except smtplib.SMTPResponseException as exc:
            transient = 400 <= exc.smtp_code < 500
            message = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) \
                else str(exc.smtp_error)
            return self._delivery(Outcome.RETRYABLE if transient else Outcome.FAILED,
                                  f"SMTP {exc.smtp_code} {message}")
        except smtplib.SMTPNotSupportedError as exc:  # no STARTTLS, no AUTH: configuration
            return self._delivery(Outcome.FAILED, f"not supported by the server: {exc}")
        except tls.SSLCertVerificationError as exc:
            return self._delivery(Outcome.FAILED, f"TLS certificate not trusted: {exc.verify_message}")
        except (smtplib.SMTPException, OSError) as exc:  # refused, timed out, disconnected
            return self._delivery(Outcome.RETRYABLE, f"not delivered: {type(exc).__name__}: {exc}")
        detail = f"sent to {len(self.recipients) - len(refused)} recipient(s)"
        if refused:
            detail += f", refused: {_refusals(refused)}"
        ref = mail["Message-ID"] if notice.state == "firing" else mail["In-Reply-To"]
        return self._delivery(Outcome.OK, detail, ref)

    def compose(self, notice: AlertNotice) -> EmailMessage:
        """The mail for a notice, threaded under the firing mail."""
        mail = EmailMessage()
        mail["Subject"] = " ".join(headline(notice).split())[:250]
        mail["From"], mail["To"] = self.sender, ", ".join(self.recipients)
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        first = notice.refs.get(self.name) or self.thread_id(notice)
        if notice.state == "firing":
            mail["Message-ID"] = first
        else:
            mail["Message-ID"] = make_msgid("lifeboat", domain=self.domain)
            mail["In-Reply-To"], mail["References"] = first, first
        mail["X-Lifeboat-Alert"] = notice.key
        mail.set_content(body(notice))
        return mail

    def thread_id(self, notice: AlertNotice) -> str:
        """The firing mail's Message-ID: the same for one alert's incident, whoever computes it."""
        digest = hashlib.sha256(f"{notice.key}|{notice.started_at:.3f}".encode()).hexdigest()[:32]
        return f"<lifeboat.{digest}@{self.domain}>"

    def _submit(self, mail: EmailMessage) -> dict[str, tuple[int, bytes]]:
        context = tls.create_default_context()
        if self.ssl:
            server: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                                    context=context)
        else:
            server = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with server:
            if self.starttls:
                server.starttls(context=context)
            if self.username and self.password:
                server.login(self.username, self.password)
            return server.send_message(mail, self.sender, self.recipients)

    def _delivery(self, outcome: Outcome, detail: str, ref: str | None = None) -> Delivery:
        return Delivery(self.name, outcome, redact(detail, self.secrets), ref)


def body(notice: AlertNotice) -> str:
    """The plain-text body: every field, then the remediation history."""
    rows = [("Alert", f"{notice.alertname} (rule {notice.rule})"), ("State", notice.state),
            ("Severity", notice.severity), ("Cluster", notice.cluster or "-"),
            ("Value", value_text(notice)), ("Threshold", notice.threshold or "-"),
            ("Started", when(notice.started_at))]
    if notice.state == "resolved":
        rows.append(("Resolved", when(notice.ended_at)))
    if notice.acknowledged_by:
        rows.append(("Acknowledged by", notice.acknowledged_by))
    rows += [("Runbook", notice.runbook_url or "-"), ("Key", notice.key)]
    rows += [(f"Label {name}", value) for name, value in sorted(notice.labels.items())]
    rows += [(str(name), str(value)) for name, value in notice.details.items()]
    width = max(len(name) for name, _ in rows) + 2
    lines = [notice.summary, "", notice.description, ""] if notice.description else [notice.summary, ""]
    lines += [f"{name + ':':<{width}}{value}" for name, value in rows]
    if notice.escalated and notice.remediation:  # every attempt, with its output as it was
        lines += ["", "Remediation gave up; full history:"]
        for step in notice.remediation:
            lines.append(f"  #{step.attempt} {when(step.at)} {step.action}: {step.result}")
            lines += [f"      {line}" for line in shorten(step.output, FULL_OUTPUT).splitlines()]
    elif notice.remediation:
        lines += ["", "Remediation so far:"] + [f"  {step_line(step)}" for step in steps(notice)]
    if notice.group:
        lines += ["", "Fired together with:"] + [f"  {key}" for key in notice.group]
    return "\n".join(lines) + "\n"


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{who} ({code})" for who, (code, _) in refused.items())
