"""crawler: capture at-risk web sites into standard WARC files and watch them for takedowns."""

__version__ = "0.1.0"
