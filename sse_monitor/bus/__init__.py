"""The event log (its contract and the in-memory log), SSE framing, and the local fan-out."""
