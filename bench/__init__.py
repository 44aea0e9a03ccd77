"""Benchmarks and benchmark processors; each benchmark prints one JSON line per scenario."""
