"""The console's identity-provider login without Streamlit: claims to a role, and the session
a signed-in identity gets (what dashboard/ui.py builds from ``st.user``)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dashboard import auth
from engine.config.console import ConsoleSettings, OidcSettings

ROLES = {"dba": "admin", "oncall": "operator", "staff": "viewer"}


def oidc(**overrides: object) -> OidcSettings:
    return OidcSettings(**({"enabled": True, "roles": ROLES} | overrides))


@pytest.mark.parametrize(("groups", "role"), [
    (["staff"], "viewer"),
    (["staff", "oncall"], "operator"),
    (["oncall", "dba", "staff"], "admin"),  # the highest, whatever the order
    ("oncall", "operator"),  # one value as a string
    (("dba",), "admin"),
    (["unknown", "oncall"], "operator"),  # values without a mapping are ignored
])
def test_claim_values_map_to_the_highest_role(groups: object, role: str) -> None:
    assert auth.role_from_claims(oidc(), {"sub": "u1", "groups": groups}) == role


@pytest.mark.parametrize("claims", [
    {"sub": "u1", "groups": ["unknown"]},
    {"sub": "u1", "groups": []},
    {"sub": "u1", "groups": "Oncall"},  # values match exactly (case included)
    {"sub": "u1"},  # the claim is missing
    {"sub": "u1", "groups": None},
])
def test_no_match_gets_the_default_role_or_is_refused(claims: dict) -> None:
    assert auth.role_from_claims(oidc(), claims) is None
    assert auth.role_from_claims(oidc(default_role="viewer"), claims) == "viewer"


def test_a_nested_claim_is_reached_by_a_dotted_name() -> None:
    settings = oidc(role_claim="realm_access.roles")
    assert auth.role_from_claims(settings, {"realm_access": {"roles": ["staff", "dba"]}}) == "admin"
    assert auth.role_from_claims(settings, {"realm_access": {"groups": ["dba"]}}) is None  # missing
    assert auth.role_from_claims(settings, {"realm_access": ["dba"]}) is None  # not an object
    assert auth.role_from_claims(settings, {"realm_access": "dba"}) is None
    # a top-level claim whose name holds a dot is taken as it is
    assert auth.role_from_claims(settings, {"realm_access.roles": "oncall",
                                            "realm_access": {"roles": ["dba"]}}) == "operator"
    # numbers and booleans are compared as their text
    assert auth.role_from_claims(oidc(role_claim="level", roles={"2": "admin"}), {"level": 2}) == "admin"


def test_a_session_from_an_identity() -> None:
    name, session = auth.oidc_login(oidc(), {"sub": "u-17", "email": "ann@example.org",
                                             "preferred_username": "ann", "groups": ["oncall"]}, now=1000.0)
    assert name == "ann@example.org"
    assert session == auth.Session("ann@example.org", "operator", "oidc", 1000.0, 1000.0)
    assert session.may("operator") and not session.may("admin")
    # the name: email, else preferred_username, else sub
    assert auth.oidc_login(oidc(), {"sub": "u-17", "preferred_username": "ann", "groups": "dba"})[0] == "ann"
    assert auth.oidc_login(oidc(), {"sub": "u-17", "email": "", "groups": "dba"})[0] == "u-17"
    assert auth.oidc_login(oidc(), {"groups": "dba"})[0] == "oidc"
    # no role: the name (for the audit trail) and no session
    assert auth.oidc_login(oidc(), {"sub": "u-18", "groups": ["guests"]}) == ("u-18", None)


def test_an_identity_session_expires_but_keeps_its_role() -> None:
    """A password session's role is re-read from [console.users]; an OIDC one keeps the
    role its claims gave (it is not in the users table), and expires alike."""
    settings = ConsoleSettings(session_timeout="60s", oidc=oidc())
    _, session = auth.oidc_login(settings.oidc, {"sub": "u1", "groups": "dba"}, now=1000.0)
    live, why = auth.current(session, settings, now=1059.0)
    assert live is not None and live.role == "admin" and live.last_seen == 1059.0 and not why
    gone, why = auth.current(live, settings, now=1059.0 + 61)
    assert gone is None and "expired" in why


def test_the_mapping_accepts_only_known_roles() -> None:
    with pytest.raises(ValidationError):
        OidcSettings(roles={"dba": "root"})
    with pytest.raises(ValidationError):
        OidcSettings(default_role="superuser")
    with pytest.raises(ValidationError):
        OidcSettings(role_clam="groups")  # an unknown key
