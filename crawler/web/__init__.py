"""The local web dashboard (``crawler serve``, ``crawler daemon --web``): targets, timelines,
events with their evidence, per-URL history, replay, and full-text search."""
