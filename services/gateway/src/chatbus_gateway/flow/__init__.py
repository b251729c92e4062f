"""The request flow of a chat message: limits -> idempotency -> the session's turn -> dispatch."""
