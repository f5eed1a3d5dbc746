"""The lowest layer: errors, the shared value types, units, redaction, fault injection and a
crawl's outcome. It imports nothing else of the package, so every other layer may use it."""
