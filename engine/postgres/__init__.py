"""Everything that talks to a PostgreSQL server or reads its data directory:
connections, pg_ctl, data-directory walking, page checksums, init and check.
"""
