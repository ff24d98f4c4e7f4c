"""Cluster mode: several gateway processes on one Redis, one producer at a time."""
