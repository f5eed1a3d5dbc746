"""``crawl.log``: one tab-separated line per URL, as Heritrix writes, for people and grep."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from crawler.core.errors import write_error
from crawler.core.models import CrawlUrl, FetchResult


class CrawlLog:
    """Appends to a crawl's log file (a resumed crawl appends to the same file)."""

    def __init__(self, path: Path) -> None:
        # Line-buffered: after a kill the log still has every line written so far.
        self._file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._failed = False  # a write failed (disk full): the crawl stops, the log is done

    def line(self, item: CrawlUrl, result: FetchResult | None, note: str = "") -> None:
        """Write: time, status, size, URL, kind, depth, via, type, duration, notes."""
        if result is None:
            status, size, mime, ms = "-", 0, "-", 0
        else:
            status = str(result.status) if result.ok else (
                result.failure.value if result.failure else "-")
            size, mime = result.body_length, result.content_type or "-"
            ms = int(result.elapsed * 1000)
            extra = []
            if result.truncated is not None:
                extra.append(f"truncated:{result.truncated.value}")
            if result.failure_detail:
                extra.append(result.failure_detail)
            note = " ".join([note, *extra]).strip()
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        if self._failed:
            return
        try:
            self._file.write(
                f"{now}\t{status}\t{size}\t{item.url}\t{item.kind.value}\t{item.depth}\t"
                f"{item.via or '-'}\t{mime}\t{ms}ms\t{note or '-'}\n")
        except OSError as exc:
            self._failed = True
            raise write_error(exc, self._file.name) from exc

    def close(self) -> None:
        """Flush and close the file (a line a full disk refused is dropped)."""
        try:
            self._file.close()
        except OSError:
            if not self._file.closed:
                self._file.close()

    def __enter__(self) -> CrawlLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
