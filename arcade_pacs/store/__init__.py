"""Storing what was received: durable files (atomic writes, fsync) and retention of old studies."""
