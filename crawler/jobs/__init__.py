"""Whole jobs: a crawl followed by detection, packaging and notification (``pipeline``), and
rebuilding a catalog from WARC files (``reindex``). The one place that joins crawl and detection."""
