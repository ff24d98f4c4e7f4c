"""Notifications: receivers and routes read from the alert rules' file (receivers.py), a burst of
alert transitions gathered for one receiver (group.py) and the bodies sent for it (payloads.py).
Not wired into the app yet (issue 16)."""
