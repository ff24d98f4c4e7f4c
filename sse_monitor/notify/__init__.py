"""Notifications: receivers and routes read from the alert rules' file (receivers.py), a burst of
alert transitions gathered for one receiver (group.py) and the bodies sent for it (payloads.py),
recorded in an outbox before anything is sent (outbox.py) and delivered from it with retries
(sender.py). Not wired into the app yet (issue 16)."""
