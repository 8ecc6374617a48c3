"""The Lifeboat ops console (``lifeboat console`` runs ``streamlit run dashboard/app.py``).

Only routing: the login page until someone is logged in, then every page (viewers see
everything; what they may not do is refused by :mod:`dashboard.actions`)."""

import streamlit as st

from dashboard import ui

st.set_page_config(page_title="Lifeboat", page_icon=":material/sailing:", layout="wide")

session = ui.session()
if session is None:
    pages = [st.Page("pages/login.py", title="Log in", icon=":material/login:", url_path="login")]
else:
    ui.sidebar(session)
    pages = [
        st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", url_path="overview",
                default=True),
        st.Page("pages/backups.py", title="Backups", icon=":material/backup:", url_path="backups"),
        st.Page("pages/restore.py", title="Restore", icon=":material/restore:", url_path="restore"),
        st.Page("pages/alerts.py", title="Alerts", icon=":material/notifications_active:", url_path="alerts"),
        st.Page("pages/drills.py", title="Drills", icon=":material/science:", url_path="drills"),
        st.Page("pages/metrics.py", title="Metrics", icon=":material/monitoring:", url_path="metrics"),
        st.Page("pages/audit.py", title="Audit", icon=":material/history:", url_path="audit"),
    ]
st.navigation(pages).run()
