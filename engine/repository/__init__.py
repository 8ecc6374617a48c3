"""The repository: key layout, manifests, frames, compression, storage drivers,
locks, retention, expire, verify and copies. Importing this package loads nothing.
"""
