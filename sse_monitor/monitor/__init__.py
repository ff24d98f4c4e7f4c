"""The producer: the poller and everything that appends what it learns to the event log."""
