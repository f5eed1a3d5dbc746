"""Evidence packages: one takedown event (or a set of URLs) as a self-contained, signed,
optionally time-stamped bag a reader can hand on (docs/evidence.md)."""
