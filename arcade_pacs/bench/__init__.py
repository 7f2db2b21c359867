"""Benchmarks (``arcade-pacs bench``): figures measured, never asserted in timed tests.

- :mod:`.suite`: ``arcade-pacs bench [--quick] [--json]``, everything in one run (engine,
  end to end with real DCMTK peers, ingest, HTTP load, memory, start-up).
- :mod:`.cine`: ``arcade-pacs bench cine``, memory and time of one long, large cine run.
"""
