"""Sending: the durable outbox of SR deliveries and the C-STORE SCU that empties it."""
