"""Logging in to the ops console through an identity provider, end to end: Streamlit's
``st.login`` (Authlib) against a small OpenID Connect provider written here (discovery
document, JWKS with an RSA key, an authorize endpoint that redirects back with a code, a
token endpoint that returns an RS256-signed id_token), driven by Debian's chromium. The
provider's ``groups`` claim maps to a role through ``[console.oidc]``."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.integration.console_browser import CHROMIUM, chromium, serving
from tests.integration.console_env import ConsoleEnv, make
from tests.integration.pg import Workspace, free_port

CLIENT_ID, CLIENT_SECRET = "lifeboat-console", "console-client-secret"
IDLE = 8  # [console] session_timeout, seconds

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
    pytest.mark.skipif(not __import__("importlib").util.find_spec("authlib"),
                       reason="Streamlit's OIDC login needs Authlib (streamlit[auth])"),
]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Provider:
    """A minimal OpenID Connect provider: whoever asks to sign in is ``identity``."""

    url: str = ""
    identity: dict[str, Any] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens_issued: int = 0

    def __post_init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
                          "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                          "e": b64url(numbers.e.to_bytes(3, "big"))}]}

    def id_token(self, claims: dict[str, Any]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        signing = (b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "k1"}).encode()) + "."
                   + b64url(json.dumps(claims).encode()))
        signature = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing + "." + b64url(signature)

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.url, "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token", "jwks_uri": f"{self.url}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]}


def handler_for(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def answer(self, status: int, body: dict[str, Any] | None = None,
                   location: str | None = None) -> None:
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            payload = json.dumps(body or {}).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            asked = dict(urllib.parse.parse_qsl(query))
            if path == "/.well-known/openid-configuration":
                self.answer(200, provider.discovery())
            elif path == "/jwks":
                self.answer(200, provider.jwks())
            elif path == "/authorize":
                if asked.get("client_id") != CLIENT_ID or asked.get("response_type") != "code" \
                        or "openid" not in asked.get("scope", "").split():
                    self.answer(400, {"error": "invalid_request"})
                    return
                code = secrets.token_urlsafe(16)
                provider.codes[code] = {"nonce": asked.get("nonce"), "redirect_uri": asked["redirect_uri"]}
                back = asked["redirect_uri"] + "?" + urllib.parse.urlencode(
                    {"code": code, "state": asked.get("state", "")})
                self.answer(302, location=back)
            else:
                self.answer(404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            basic = self.headers.get("Authorization", "")
            if basic.startswith("Basic "):
                who, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
                who, secret = urllib.parse.unquote(who), urllib.parse.unquote(secret)
            else:
                who, secret = form.get("client_id", ""), form.get("client_secret", "")
            grant = provider.codes.pop(form.get("code", ""), None)
            if self.path != "/token" or (who, secret) != (CLIENT_ID, CLIENT_SECRET) or grant is None \
                    or form.get("grant_type") != "authorization_code" \
                    or form.get("redirect_uri") != grant["redirect_uri"]:
                self.answer(400, {"error": "invalid_grant"})
                return
            now = int(time.time())
            claims = {"iss": provider.url, "aud": CLIENT_ID, "iat": now, "exp": now + 300,
                      **({"nonce": grant["nonce"]} if grant["nonce"] else {}), **provider.identity}
            provider.tokens_issued += 1
            self.answer(200, {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                              "expires_in": 300, "id_token": provider.id_token(claims)})

    return Handler


@contextlib.contextmanager
def identity_provider() -> Iterator[Provider]:
    provider = Provider()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(provider))
    provider.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()


OIDC = '''
[console.oidc]
enabled = true
role_claim = "groups"
roles = { dba = "admin", oncall = "operator" }
'''


@pytest.fixture(scope="module")
def served(workspace: Workspace) -> Iterator[tuple[ConsoleEnv, str, Provider]]:
    console = make(workspace, gap=0.1, console_extra=OIDC, session_timeout=IDLE)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    home = workspace.path("console-oidc-cwd")  # Streamlit reads .streamlit/secrets.toml from here
    log = workspace.root / "console-oidc.log"
    with identity_provider() as provider:
        (home / ".streamlit").mkdir()
        (home / ".streamlit" / "secrets.toml").write_text(
            f'[auth]\nredirect_uri = "{url}/oauth2callback"\ncookie_secret = "{secrets.token_hex(32)}"\n'
            f'client_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n'
            f'server_metadata_url = "{provider.url}/.well-known/openid-configuration"\n')
        try:
            with serving(console, port, log, cwd=home):
                yield console, url, provider
        finally:
            console.env.cleanup()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def sign_in(browser: Any, url: str) -> Any:
    """A fresh browser context (no cookie) that clicks the identity provider's button."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    page.get_by_role("button", name="Log in with the identity provider").click()
    return page


def logins(console: ConsoleEnv, actor: str) -> list[Any]:
    from engine.catalog.store import Catalog
    from engine.config.schema import load_config

    with Catalog.open(load_config(console.config)) as catalog:
        return [e for e in catalog.audit.entries(actor=actor, limit=20) if e.action == "login"]


def test_an_identity_provider_user_logs_in_with_the_role_its_groups_map_to(
        served: tuple[ConsoleEnv, str, Provider], browser: Any) -> None:
    console, url, provider = served
    provider.identity = {"sub": "u-100", "email": "ann@example.org", "groups": ["staff", "oncall"]}
    page = sign_in(browser, url)
    page.get_by_text("Logged in as ann@example.org (operator)").wait_for()
    assert provider.tokens_issued == 1  # through the token endpoint, with a signed id_token
    page.get_by_role("link", name="Backups").first.click()
    page.get_by_role("button", name="Start backup").wait_for()  # an operator's action is offered
    entries = logins(console, "ann@example.org")
    assert [(e.result, e.role, e.params.get("via")) for e in entries] == [("ok", "operator", "oidc")]
    page.context.close()


def test_an_identity_without_a_mapped_group_is_refused_and_recorded(
        served: tuple[ConsoleEnv, str, Provider], browser: Any) -> None:
    console, url, provider = served
    provider.identity = {"sub": "u-200", "email": "eve@example.org", "groups": ["contractors"]}
    page = sign_in(browser, url)
    page.get_by_text("eve@example.org has no role in this console.").wait_for()
    assert page.get_by_text("Logged in as").count() == 0
    entries = logins(console, "eve@example.org")
    assert [(e.result, e.detail) for e in entries] == [("refused", "no role for its claims")]
    page.context.close()


def test_an_idle_identity_session_expires_and_signs_out(
        served: tuple[ConsoleEnv, str, Provider], browser: Any) -> None:
    """After ``session_timeout`` without activity the console's session ends and so does
    Streamlit's sign-in cookie: a new visit does not log the user in again by itself."""
    console, url, provider = served
    provider.identity = {"sub": "u-300", "email": "bob@example.org", "groups": "dba"}
    page = sign_in(browser, url)
    page.get_by_text("Logged in as bob@example.org (admin)").wait_for()
    page.wait_for_timeout((IDLE + 1) * 1000)
    page.get_by_role("link", name="Backups").first.click()  # the first run after the idle time
    page.get_by_role("button", name="Log in with the identity provider").wait_for()
    page.goto(url)  # a new visit, with whatever cookie is left
    page.get_by_role("button", name="Log in with the identity provider").wait_for()
    page.wait_for_timeout(3000)
    assert page.get_by_text("Logged in as").count() == 0
    assert [e.result for e in logins(console, "bob@example.org")] == ["ok"]  # signed in once only
    page.context.close()
