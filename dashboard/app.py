"""The Lifeboat ops console (``lifeboat console`` runs ``streamlit run dashboard/app.py``).

Only routing: the login page until someone is logged in, then every page (viewers see
everything; what they may not do is refused by :mod:`dashboard.actions`)."""

import streamlit as st

from dashboard import ui

st.set_page_config(page_title="Lifeboat", page_icon="🛟", layout="wide")

session = ui.session()
if session is None:
    pages = [st.Page("pages/login.py", title="Log in", icon="🔑", url_path="login")]
else:
    ui.sidebar(session)
    pages = [
        st.Page("pages/overview.py", title="Overview", icon="🛟", url_path="overview", default=True),
        st.Page("pages/backups.py", title="Backups", icon="💾", url_path="backups"),
        st.Page("pages/restore.py", title="Restore", icon="⏪", url_path="restore"),
        st.Page("pages/alerts.py", title="Alerts", icon="🚨", url_path="alerts"),
        st.Page("pages/drills.py", title="Drills", icon="🧪", url_path="drills"),
        st.Page("pages/metrics.py", title="Metrics", icon="📈", url_path="metrics"),
        st.Page("pages/audit.py", title="Audit", icon="📜", url_path="audit"),
    ]
st.navigation(pages).run()
