"""Restores: planning, recovery targets and settings, writing files, delta, starting
the server and following recovery.
"""
