"""What is kept on disk: WARC writing and reading, the SQLite catalog, the frontier, crash
recovery, the archive layout, WACZ/CDXJ packaging, verification and pywb replay. Imports
``core`` and ``capture``."""
