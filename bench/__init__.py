"""Benchmark harness: Lifeboat against pgBackRest and pg_basebackup (see bench/README.md)."""
