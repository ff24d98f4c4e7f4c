"""sse-monitor: a Server-Sent Events gateway that shows KATO and its containers live."""
