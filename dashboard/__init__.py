"""The Streamlit ops console (on the roadmap; a client of the engine's API)."""
