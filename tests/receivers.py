"""Local stand-ins for the services alerts are delivered to, for tests with the real clients.

Everything listens on 127.0.0.1 on a free port and records what it received; nothing is
mocked on the client side. Four receivers:

``HttpReceiver()`` / ``HttpsReceiver(certs_dir)``
    A threading HTTP(S) server. ``.url`` is its base URL (``http://127.0.0.1:PORT``), every
    request is appended to ``.requests`` as a :class:`Request` (method, path, headers, body,
    json) before it is answered. Replies come from a script, then ``default``::

        with HttpReceiver(script=[500, 500, 202]) as pd:   # or pd.script(500, 500, 202)
            ...                                             # 4th request on: 200 (default)
        pd.requests[0].json["event_action"], pd.requests[0].header("authorization"), pd.paths()

    ``.default`` (a status) may be changed at any time, e.g. to 500 for "down until further notice".

    A script entry is a status (``500``), a Slack Web API error name answered as HTTP 200
    with ``{"ok": false, "error": name}`` (``"invalid_auth"``), or ``(status, body)`` for a
    reply of your own (``body``: dict -> JSON, str -> text). The body of a status-only reply
    depends on the path, so one receiver can stand for any of these APIs:

    - ``POST /v2/enqueue``: PagerDuty's Events API v2. 2xx -> ``202 {"status": "success",
      "message": "Event processed", "dedup_key": ...}`` (the request's key, or a new one);
      other statuses -> ``{"status": "invalid event", "message": ..., "errors": [...]}``.
    - ``POST /api/chat.postMessage`` (and any ``/api/<method>``): the Slack Web API.
      2xx -> ``200 {"ok": true, "ts": "1700000000.000100", "channel": ...}`` with a new ``ts``
      each time; 429 -> ``{"ok": false, "error": "ratelimited"}`` with ``Retry-After``.
    - ``/api/annotations``: Grafana. POST -> ``{"id": N, "message": "Annotation added"}``
      (N counts from 1), PATCH/PUT -> ``{"message": "Annotation patched"}``.
    - anything else (a Slack incoming webhook, a JSON webhook): ``ok`` as text, or
      ``no_service`` for a 4xx and ``internal_error`` for a 5xx, as Slack's webhooks answer.

    ``HttpsReceiver`` serves TLS with a self-signed certificate for IP 127.0.0.1 made by the
    ``openssl`` CLI (once per test session, or in ``certs_dir``); ``.ca_file`` is the
    certificate to trust (clients that do not trust it fail verification, as they would
    against a wrong server).

``SmtpReceiver(users=None, script=())``
    aiosmtpd's ``Controller`` on a free port: ``.host``, ``.port``, and ``.messages``, a list of
    :class:`Mail` (envelope sender, recipients, parsed ``email.message.EmailMessage``). With
    ``users={"name": "password"}`` it offers AUTH PLAIN/LOGIN without TLS and accepts only
    those; ``script`` holds replies to DATA (``"451 4.3.0 Try again later"``), then 250.

``HangUpReceiver()``
    A TCP listener that reads what a client sends first, then resets the connection: the
    "connection reset by peer" of a crashing proxy. ``.url``/``.port``, and ``.connections``
    counts the connections made, which shows whether a client retried on its own.

All of them are context managers and have ``close()``; ``free_port()`` gives a port where
nothing listens (for "connection refused"). tests/unit's conftest refuses every connection:
a unit test module using these overrides its ``_no_network`` fixture to allow loopback (as
tests/unit/test_alert_channels.py does).
"""

from __future__ import annotations

import atexit
import itertools
import json
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

Reply = int | str | tuple[int, dict[str, Any] | list[Any] | str]


def free_port() -> int:
    """A loopback port nothing listens on (as long as nobody takes it meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # as sent; look them up with .header(name), case-insensitively
    body: bytes
    json: Any = None  # the body decoded, when it was JSON

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), None)


class HttpReceiver:
    """A plain-HTTP receiver on 127.0.0.1 (see the module for the replies it gives)."""

    scheme = "http"

    def __init__(self, script: Iterable[Reply] = (), default: int = 200) -> None:
        self.requests: list[Request] = []
        self.default = default
        self._script: list[Reply] = list(script)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.server = self._server()
        self.url = f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order, before the default again."""
        with self._lock:
            self._script.extend(replies)

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _server(self) -> ThreadingHTTPServer:
        return ThreadingHTTPServer(("127.0.0.1", 0), self._handler())

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Request(self.command, self.path, dict(self.headers.items()), body, _json(body))
                status, reply, extra = receiver._answer(request)
                data = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
                self.send_response(status)
                kind = "text/plain" if isinstance(reply, str) else "application/json"
                for name, value in {"Content-Type": kind, "Content-Length": str(len(data)), **extra}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def _answer(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append(request)
            entry: Reply = self._script.pop(0) if self._script else self.default
            number = next(self._ids)
        if isinstance(entry, tuple):
            return entry[0], entry[1], {}
        if isinstance(entry, str):  # a Slack Web API error: HTTP 200, ok=false
            return 200, {"ok": False, "error": entry}, {}
        return _api_reply(request, entry, number)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _api_reply(request: Request, status: int, number: int) -> tuple[int, Any, dict[str, str]]:
    """What the API behind ``request.path`` answers with ``status``."""
    ok, path, body = 200 <= status < 300, request.path.split("?")[0], request.json or {}
    if path == "/v2/enqueue":  # PagerDuty Events API v2
        if ok:
            key = body.get("dedup_key") or f"generated-{number}"
            return 202, {"status": "success", "message": "Event processed", "dedup_key": key}, {}
        return status, {"status": "invalid event", "message": "Event object is invalid",
                        "errors": [f"HTTP {status} (scripted)"]}, {}
    if path.startswith("/api/annotations"):  # Grafana
        if not ok:
            return status, {"message": f"scripted HTTP {status}"}, {}
        if request.method == "POST":
            return status, {"id": number, "message": "Annotation added"}, {}
        return status, {"message": "Annotation patched"}, {}
    if path.startswith("/api/"):  # Slack Web API
        if status == 429:
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}
        if not ok:
            return status, {"ok": False, "error": "internal_error"}, {}
        return status, {"ok": True, "ts": f"1700000000.{number:06d}", "channel": body.get("channel"),
                        "message": {"text": body.get("text")}}, {}
    return status, "ok" if ok else ("no_service" if status < 500 else "internal_error"), {}


class HttpsReceiver(HttpReceiver):
    """:class:`HttpReceiver` over TLS, with a fresh self-signed certificate for 127.0.0.1."""

    scheme = "https"

    def __init__(self, script: Iterable[Reply] = (), default: int = 200,
                 certs_dir: Path | None = None) -> None:
        self.ca_file, self.key_file = self_signed_certificate(certs_dir)
        super().__init__(script, default)

    def _server(self) -> ThreadingHTTPServer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, self.key_file)
        return _TlsServer(("127.0.0.1", 0), self._handler(), context)


_made: dict[Path | None, tuple[str, str]] = {}


def self_signed_certificate(certs_dir: Path | None = None) -> tuple[str, str]:
    """(certificate, key) files for IP 127.0.0.1, made once per directory by ``openssl req``.

    Without ``certs_dir`` they go to a temporary directory kept for the test session: making
    an RSA key takes a few tenths of a second, too long to pay for every receiver.
    """
    if certs_dir not in _made:
        where = certs_dir or Path(tempfile.mkdtemp(prefix="lifeboat-tls-"))
        if certs_dir is None:
            atexit.register(shutil.rmtree, where, True)
        cert, key = str(where / "cert.pem"), str(where / "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
        _made[certs_dir] = cert, key
    return _made[certs_dir]


class _TlsServer(ThreadingHTTPServer):
    """Handshakes in the request's thread, so a client that gives up cannot stall the server."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self.context = context

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(10)
            request.do_handshake()
        except (ssl.SSLError, OSError):  # the client did not trust us: nothing to answer
            return
        super().finish_request(request, client_address)


class HangUpReceiver:
    """Accepts TCP connections on 127.0.0.1 and resets each one (see the module)."""

    def __init__(self) -> None:
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(0.2)  # an SMTP client sends nothing before the greeting
                try:
                    conn.recv(65536)
                except OSError:
                    pass
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        """The plain-text body, with the wire's CRLF line ends turned back into newlines."""
        part = self.message.get_body(("plain",))
        return part.get_content().replace("\r\n", "\n") if part is not None else ""


@dataclass
class _Handler:
    messages: list[Mail]
    script: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.script:
            return self.script.pop(0)
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        parsed = message_from_bytes(data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(Mail(str(envelope.mail_from), list(envelope.rcpt_tos), parsed))
        return "250 2.0.0 Message accepted for delivery"


class SmtpReceiver:
    """An SMTP server on 127.0.0.1 that keeps every message it accepts (see the module)."""

    def __init__(self, users: dict[str, str] | None = None, script: Iterable[str] = ()) -> None:
        self.messages: list[Mail] = []
        self.host, self.port = "127.0.0.1", free_port()
        self._handler = _Handler(self.messages, list(script))
        options: dict[str, Any] = {}
        if users is not None:
            options = {"authenticator": _Authenticator(users), "auth_require_tls": False}
        self.controller = Controller(self._handler, hostname=self.host, port=self.port, **options)
        self.controller.start()

    def script(self, *replies: str) -> None:
        """Answer the next DATA commands with ``replies`` (e.g. ``"554 5.7.1 Rejected"``)."""
        self._handler.script.extend(replies)

    def close(self) -> None:
        self.controller.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Authenticator:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            user, password = data.login.decode(), data.password.decode()
            if self.users.get(user) == password:
                return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)
