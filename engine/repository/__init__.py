"""The repository: key layout and inventory, sealed documents, manifests, block lists,
packs, frames, compression, storage drivers, locks, retention, expire, verify and copies.
Importing this package loads nothing.
"""
