"""Log in: a user of ``[console.users]`` with its password, or the identity provider."""

import streamlit as st

from dashboard import auth, data, ui

st.title("Lifeboat")
settings = data.context().config.console
notice = st.session_state.pop("login_notice", None)
if notice:
    st.warning(notice)

if settings.oidc.enabled:
    st.button("Log in with the identity provider", key="oidc_login",
              on_click=lambda: st.login(settings.oidc.provider) if settings.oidc.provider else st.login())

if settings.users:
    with st.form("login"):
        user = st.text_input("User", key="login_user")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        outcome = auth.login(data.context().catalog, settings, user, password, ui.client_address())
        if outcome.session is None:
            st.error(outcome.message)
        else:
            st.session_state[ui.SESSION_KEY] = outcome.session
            st.rerun()
elif not settings.oidc.enabled:
    st.error("No one can log in: add users to [console.users] (passwords made by "
             "'lifeboat console hash-password') or enable [console.oidc].")
