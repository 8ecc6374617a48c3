"""The catalog: jobs, events, objectives, data-loss records, drills, on SQLite or
PostgreSQL.
"""
