"""What the tests share: the servers they start, the clients they speak with, and waiting."""
