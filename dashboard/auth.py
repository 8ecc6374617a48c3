"""Who is using the console: password hashes, logins, sessions, lockout and OIDC roles.

Passwords are scrypt hashes in the form ``scrypt$N$r$p$salt$hash`` (base64 salt and hash),
made by :func:`hash_password` (``lifeboat console hash-password``) and checked by
:func:`verify_password` in constant time. Failed logins are recorded in the catalog's audit
trail (action ``login``, result ``refused``) and counted from there: a user, or a client
address, with ``max_failed_logins`` refusals within ``lockout`` is refused without its
password being checked until they age out, whichever console process it tries. A login
ends after ``session_timeout`` without activity.

Nothing here imports Streamlit: the pages keep the :class:`Session` in their session state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.catalog.store import Catalog
    from engine.config.console import ConsoleSettings, OidcSettings

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024
SOURCE = "console"
#: Roles in order of what they may do: each may do what the ones before it may.
RANKS = {"viewer": 0, "operator": 1, "admin": 2}


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    if not password:
        raise ValueError("the password is empty")
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` is the one ``stored`` was made from (constant time)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        found = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                               p=int(p), maxmem=_MAXMEM, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(found, expected)


#: Checked for an unknown user, so that its refusal takes as long as a wrong password's.
_DUMMY_HASH = ("scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$"
               "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")


@dataclass(frozen=True)
class Session:
    """A logged-in user; ``via``: "password" or "oidc"."""

    user: str
    role: str
    via: str
    started_at: float
    last_seen: float

    def may(self, role: str) -> bool:
        """True when this session's role includes ``role``'s rights."""
        return RANKS.get(self.role, -1) >= RANKS[role]

    def touched(self, now: float | None = None) -> Session:
        return replace(self, last_seen=time.time() if now is None else now)


@dataclass(frozen=True)
class Login:
    """The outcome of a login attempt: a session, or why not."""

    session: Session | None
    message: str = ""


def failed_logins(catalog: Catalog, settings: ConsoleSettings, user: str, client: str,
                  now: float | None = None) -> tuple[int, int]:
    """Refused logins within ``lockout`` (user's since its last successful login, client's),
    read from the audit trail."""
    now = time.time() if now is None else now
    entries = catalog.audit.entries(since=now - settings.lockout, limit=10_000)
    by_user = by_client = 0
    user_open = client_open = True
    for entry in entries:  # newest first
        if entry.action != "login" or entry.source != SOURCE:
            continue
        if entry.actor == user and user_open:
            if entry.result == "ok":
                user_open = False
            elif entry.result == "refused":
                by_user += 1
        if entry.params.get("client") == client and client_open:
            if entry.result == "ok":
                client_open = False
            elif entry.result == "refused":
                by_client += 1
    return by_user, by_client


def login(catalog: Catalog, settings: ConsoleSettings, user: str, password: str, client: str,
          now: float | None = None) -> Login:
    """Check a password login and record it in the audit trail (refusals included)."""
    now = time.time() if now is None else now
    user = user.strip()
    by_user, by_client = failed_logins(catalog, settings, user, client, now)
    params = {"client": client}
    if by_user >= settings.max_failed_logins or by_client >= settings.max_failed_logins:
        which = "this user" if by_user >= settings.max_failed_logins else "this address"
        message = (f"Too many failed logins for {which}: try again in {settings.lockout:g} seconds "
                   "after the last attempt.")
        catalog.audit.record(user or "-", SOURCE, "login", "refused", params=params,
                             detail=f"locked out ({which})")
        return Login(None, message)
    account = settings.users.get(user)
    good = verify_password(password, account.password_hash if account else _DUMMY_HASH)
    if account is None or not good:
        catalog.audit.record(user or "-", SOURCE, "login", "refused", params=params,
                             detail="unknown user" if account is None else "wrong password")
        return Login(None, "Unknown user or wrong password.")
    catalog.audit.record(user, SOURCE, "login", "ok", params=params, role=account.role)
    return Login(Session(user, account.role, "password", now, now))


def current(session: Session | None, settings: ConsoleSettings,
            now: float | None = None) -> tuple[Session | None, str]:
    """The session if it is still valid (touched now), else None and why. A password
    session's role is the configuration's now: a user removed or changed takes effect at
    once."""
    if session is None:
        return None, ""
    now = time.time() if now is None else now
    if now - session.last_seen > settings.session_timeout:
        return None, "Your session expired after inactivity: log in again."
    if session.via == "password":
        account = settings.users.get(session.user)
        if account is None:
            return None, "Your user no longer exists in the configuration."
        session = replace(session, role=account.role)
    return session.touched(now), ""


def claim(claims: dict[str, Any], name: str) -> Any:
    """The value of claim ``name``: a top-level claim of that name, else a dotted path into
    nested claims (``realm_access.roles``); None when it is missing."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def role_from_claims(oidc: OidcSettings, claims: dict[str, Any]) -> str | None:
    """The role an identity provider's user gets: the highest role a value of the
    ``role_claim`` (one value or a list; a dotted name reaches a nested claim) maps to, else
    ``default_role`` (None: refused)."""
    value = claim(claims, oidc.role_claim)
    values = value if isinstance(value, list | tuple) else [] if value is None else [value]
    roles = [oidc.roles[str(v)] for v in values if str(v) in oidc.roles]
    if roles:
        return max(roles, key=lambda r: RANKS[r])
    return oidc.default_role


def oidc_user(claims: dict[str, Any]) -> str:
    """The name an identity provider's user is shown and audited under."""
    for key in ("email", "preferred_username", "sub"):
        if claims.get(key):
            return str(claims[key])
    return "oidc"


def oidc_login(oidc: OidcSettings, claims: dict[str, Any], now: float | None = None
               ) -> tuple[str, Session | None]:
    """The user's name and the session a signed-in identity gets (None: no role for its
    claims, refused). Recording it in the audit trail is the caller's."""
    name = oidc_user(claims)
    role = role_from_claims(oidc, claims)
    if role is None:
        return name, None
    now = time.time() if now is None else now
    return name, Session(name, role, "oidc", now, now)
