"""One crawl of one target: the engine that drives fetching into the archive, and its log.
Imports ``core``, ``capture`` and ``archive``."""
