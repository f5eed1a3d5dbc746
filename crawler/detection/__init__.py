"""Takedown detection: classification rules, the pure comparison of two crawls' catalog rows,
network re-checks and probes, and the state machine that turns findings into events.
Imports ``core``, ``capture`` and ``archive`` (never ``crawl``: it works on what a crawl left)."""
