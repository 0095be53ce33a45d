"""Persistent state: SQLite (WAL) in the data dir, code blobs by sha256 on disk."""
