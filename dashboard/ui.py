"""What every page shares: the logged-in session (kept in Streamlit's session state and
checked on every run), the sidebar, and how an action's outcome is shown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from dashboard import auth, data
from dashboard.actions import Refused
from engine.errors import LifeboatError

SESSION_KEY = "lifeboat_session"
#: a level's word and Streamlit colour: the emoji alone is a box where no emoji font is installed
LEVEL_BADGES = {"green": ("within objective", "green"), "amber": ("near objective", "orange"),
                "red": ("beyond objective", "red"), "grey": ("unknown", "gray")}


def session() -> auth.Session | None:
    """The live session (its idle timer restarted), or None: not logged in or expired."""
    settings = data.context().config.console
    stored = st.session_state.get(SESSION_KEY)
    if stored is None and settings.oidc.enabled:
        stored = _oidc_session(settings)
    live, why = auth.current(stored, settings)
    if live is None:
        if stored is not None:
            st.session_state.pop(SESSION_KEY, None)
            if why:
                st.session_state["login_notice"] = why
            if stored.via == "oidc":
                # the provider's sign-in lives on in Streamlit's cookie: end it too, or the
                # next run would make a new session from it and the idle timeout mean nothing
                st.logout()
        return None
    st.session_state[SESSION_KEY] = live
    return live


def _oidc_session(settings: Any) -> auth.Session | None:
    """A session for a user signed in through Streamlit's OIDC login, with the role its
    claims map to (None: not signed in, or no role; the refusal is recorded once)."""
    try:
        user = st.user
        if not user.is_logged_in:
            return None
        claims = user.to_dict()
    except Exception:  # no [auth] secrets: OIDC is not usable, the form still is
        return None
    name, made = auth.oidc_login(settings.oidc, claims)
    if made is None:
        if not st.session_state.get("oidc_refused"):
            st.session_state["oidc_refused"] = True
            data.context().catalog.audit.record(name, auth.SOURCE, "login", "refused",
                                                params={"via": "oidc"}, detail="no role for its claims")
        st.session_state["login_notice"] = f"{name} has no role in this console."
        return None
    data.context().catalog.audit.record(name, auth.SOURCE, "login", "ok", params={"via": "oidc"},
                                        role=made.role)
    return made


def logout() -> None:
    stored = st.session_state.pop(SESSION_KEY, None)
    if stored is not None and stored.via == "oidc":
        st.logout()


def sidebar(session: auth.Session) -> None:
    with st.sidebar:
        st.caption(f"Logged in as **{session.user}** ({session.role})")
        st.button("Log out", key="logout", on_click=logout)


def client_address() -> str:
    try:
        address = st.context.ip_address
    except Exception:
        return "unknown"
    return address if isinstance(address, str) and address else "unknown"


def act(what: Callable[[], Any], done: str) -> Any:
    """Run an action: show ``done`` (formatted with its result) or why it was refused."""
    try:
        result = what()
    except Refused as exc:
        st.error(f"Refused: {exc}")
        return None
    except LifeboatError as exc:
        st.error(str(exc))
        return None
    data.refresh()
    st.success(done.format(result=result))
    return result


def badge(where: Any, text: str, colour: str) -> None:
    """A coloured word under a figure, so its state reads without colour emoji or colour vision."""
    where.badge(text, color=colour)


def level_badge(where: Any, name: str) -> None:
    badge(where, *LEVEL_BADGES.get(name, LEVEL_BADGES["grey"]))


def cluster_picker(key: str, label: str = "Cluster") -> str | None:
    names = data.clusters()
    if not names:
        st.info("No cluster is configured.")
        return None
    return st.selectbox(label, names, key=key)
