"""Sending: the durable outbox of result objects (SR, result images, presentation states) and the C-STORE SCU that empties it."""
