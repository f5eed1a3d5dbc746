"""Getting a page off the network and understanding it: URL rules, the HTTP client and name
resolver, robots.txt, scope, link and text extraction, challenge-page fingerprints, the per-host
circuit breaker, and the crawl settings that bundle these policies. Imports only ``core``."""
