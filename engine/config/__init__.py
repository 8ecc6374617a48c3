"""The configuration: the TOML schema, loading and validation, units, and the
validated-settings cache of the WAL path. Importing this package loads nothing.
"""
