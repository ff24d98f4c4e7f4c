"""The edge: everything that answers HTTP, reading the event log."""
