"""The WAL archive: names and LSN arithmetic, push and get, async archiving,
streaming and timelines. Importing this package loads nothing (the WAL path is hot).
"""
