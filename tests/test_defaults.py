"""One home for every default: a crawl set up on the command line with no options and one set
up in a targets file with only a name and seeds get the same settings, and ``--help`` shows
the values they use."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from crawler.capture.settings import CrawlSettings
from crawler.commands.cli import _settings_from_options, archive, cli
from crawler.schedule.config import load


def _from_cli(tmp_path: Path) -> CrawlSettings:
    ctx = archive.make_context("archive", ["https://memo.example/", "--target", "memo",
                                           "--output", str(tmp_path)])
    return _settings_from_options(ctx.params["seeds"], ctx.params)


def _from_config(tmp_path: Path) -> CrawlSettings:
    path = tmp_path / "targets.toml"
    path.write_text(f'archives = "{tmp_path}"\n[[targets]]\nname = "memo"\n'
                    'seeds = ["https://memo.example/"]\nevery = "1d"\n', "utf-8")
    return load(path).targets["memo"].settings


def _fields(value: Any, prefix: str = "") -> dict[str, Any]:
    """Return every leaf setting by its dotted name."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        found: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            found.update(_fields(getattr(value, f.name), f"{prefix}{f.name}."))
        return found
    return {prefix.rstrip("."): value}


def test_the_command_line_and_the_config_file_default_alike(tmp_path: Path) -> None:
    cli_side, file_side = _fields(_from_cli(tmp_path)), _fields(_from_config(tmp_path))
    differ = {k: (cli_side[k], file_side.get(k)) for k in cli_side
              if cli_side[k] != file_side.get(k)}
    assert differ == {}, differ


def test_help_shows_the_defaults_in_use(tmp_path: Path) -> None:
    settings = _from_cli(tmp_path)
    text = CliRunner().invoke(cli, ["archive", "--help"], terminal_width=200).output
    text = re.sub(r"\s+", " ", text)
    shown = {
        "--concurrency": str(settings.politeness.concurrency),
        "--per-host": str(settings.politeness.per_host),
        "--delay": str(settings.politeness.delay),
        "--retries": str(settings.politeness.retries),
        "--recheck": str(settings.detect.recheck_probes),
    }
    for option, value in shown.items():
        assert re.search(rf"{option}\b[^\[]*\[default: {re.escape(value)}\]", text), option


def test_the_readme_options_table_is_whole_and_shows_the_defaults_in_use() -> None:
    """The README's table renders as one table (no row stranded after a paragraph) and every
    default it states is the one ``crawler archive`` uses."""
    lines = (Path(__file__).resolve().parent.parent / "README.md").read_text("utf-8").splitlines()
    start = lines.index("| option | default | meaning |")
    rows: dict[str, str] = {}
    end = start + 2
    for end in range(start + 2, len(lines)):
        if not lines[end].startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", lines[end])[1:-1]]
        assert len(cells) == 3, lines[end]
        for name in re.findall(r"`(--[a-z-]+)", cells[0]):
            rows[name] = cells[1].strip("`")
    stranded = [line for line in lines[end:] if line.startswith("| `--")]
    assert stranded == []
    checked = 0
    for param in archive.params:
        if getattr(param, "show_default", False) and param.default is not None \
                and not getattr(param, "is_flag", False):
            name = max(param.opts, key=len)
            assert rows.get(name) == str(param.default), name
            checked += 1
    assert checked >= 15
    assert {max(p.opts, key=len) for p in archive.params if p.opts[0].startswith("-")} \
        - set(rows) - {"--help"} == set()  # every option is in the table
