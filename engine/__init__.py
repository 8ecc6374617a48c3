"""Lifeboat's engine: everything that touches PostgreSQL or the repository.

The engine never prints; it raises the typed errors of :mod:`engine.errors` and
returns results. The CLI, the agent and the console are its clients.
"""
