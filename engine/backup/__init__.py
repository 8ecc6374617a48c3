"""Backups: physical backups (pg_backup_start, block copy into packs, manifest last).
"""
