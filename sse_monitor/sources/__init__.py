"""Adapters to the outside: KATO over HTTP, its push socket and its Redis; the Docker engine."""
