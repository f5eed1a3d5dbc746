"""The command line, through click's runner."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from crawler.commands.cli import cli
from crawler.demo.sample_site import DEMO_DELAY, DEMO_PER_HOST, SampleSite, SampleSiteContent


def test_archive_json_summary(site: SampleSite, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, [
        "archive", site.url, "--output", str(tmp_path), "--delay", "0", "--per-host", "4",
        "--max-pages", "5", "--json", "--target", "sample", "--parse-workers", "0"])
    assert result.exit_code == 8, result.output  # incomplete: the limit left pages behind
    summary = json.loads(result.stdout)
    assert summary["exit_status"] == "incomplete" and summary["status"] == "incomplete"
    assert summary["stop_reason"] == "max-pages"
    assert summary["shortfall"]["limit"] > 0
    assert summary["stats"]["pages"] == 5
    assert Path(summary["directory"]).parent == tmp_path / "sample"
    assert all(Path(w).exists() for w in summary["warcs"])


def test_demo_is_a_guided_tour_of_a_takedown(tmp_path: Path) -> None:
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["demo", "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 60
    # The sample site has an endless calendar: the crawls say what its trap rules left out.
    assert "INCOMPLETE (exit incomplete)" in result.stdout
    assert "URL(s) skipped by trap rules" in result.stdout
    out = " ".join(result.stdout.split())
    why = "re-checks after the crawl reproduced it"  # every confirmation says why
    born = "Родился в 1900 году. Арестован в 1937 году."  # each page named as it was
    for line in ("CONFIRMED legal-block", "CONFIRMED removed",
                 f"/persons/3.html «{SampleSiteContent().name(3)} — {born}» (404; {why})",
                 f"/persons/4.html «{SampleSiteContent().name(4)} — {born}» (410; {why})",
                 "CONFIRMED partial-removal", "SUSPECTED delisted"):
        assert line in out, line
    assert len(list((tmp_path / "demo").glob("*/report.html"))) == 2
    assert f"crawler replay demo --output {tmp_path}" in result.stdout
    wacz = sorted((tmp_path / "demo").glob("demo-*.wacz"))[-1]
    assert "ReplayWeb.page" in result.stdout and str(wacz) in result.stdout
    assert list((tmp_path / "demo").glob("*/warc/*.warc.gz"))


def test_demo_json_is_one_document_with_both_crawls(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--output", str(tmp_path), "--persons", "5",
                                      "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # one document, nothing else on stdout
    first, second = document["crawls"]
    assert first["target"] == second["target"] == "demo"
    assert first["crawl_id"] < second["crawl_id"]
    assert not first["takedown"]["events"]  # nothing to compare the first crawl with
    assert second["takedown"]["events"]  # the tour's takedown


def test_demo_help_shows_the_defaults_it_uses() -> None:
    shown = " ".join(CliRunner().invoke(cli, ["demo", "--help"]).stdout.split())
    assert f"--per-host INTEGER Requests in flight to one host. [default: {DEMO_PER_HOST}]" \
        in shown
    assert f"[default: {DEMO_DELAY}]" in shown
    assert "--wacz" not in shown  # the tour always packages WACZ


@pytest.mark.parametrize(("args", "message"), [
    (["--depth", "-1"], "--depth"),
    (["--scope", "galaxy"], "--scope"),
    (["--include", "("], "--include"),
    (["--warc-size", "lots"], "--warc-size"),
    (["--max-time", "soon"], "--max-time"),
    (["--concurrency", "0"], "--concurrency"),
    (["--robots", "maybe"], "--robots"),
    (["--target", "../escape"], "--target"),
])
def test_bad_arguments_get_one_line_errors(args: list[str], message: str,
                                           tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["archive", "http://127.0.0.1:9/", "--output",
                                      str(tmp_path), *args])
    assert result.exit_code == 2
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and message in error_lines[0]


def test_bad_seed_is_named() -> None:
    result = CliRunner().invoke(cli, ["archive", "ftp://example.org/"])
    assert result.exit_code == 2
    assert "not an http(s) URL" in result.output


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "archive" in result.output and "demo" in result.output


def test_status_and_list_after_two_crawls(site: SampleSite, tmp_path: Path) -> None:
    args = ["archive", site.url, "--output", str(tmp_path), "--delay", "0", "--per-host", "4",
            "--target", "memo", "--parse-workers", "0", "--quiet", "--exclude", "calendar"]
    runner = CliRunner()
    assert runner.invoke(cli, args).exit_code == 0
    assert runner.invoke(cli, args).exit_code == 0  # a recrawl: a second crawl of the target
    result = runner.invoke(cli, ["status", "--output", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    crawls = report["memo"]
    assert len(crawls) == 2
    assert all(c["state"] == "complete" and c["exit_code"] == 0 for c in crawls)
    assert crawls[0]["pages"] == crawls[1]["pages"] > 40
    assert crawls[0]["robots"] == 1
    text = runner.invoke(cli, ["status", "memo", "--output", str(tmp_path)])
    assert "memo" in text.stdout and "complete" in text.stdout
    listed = runner.invoke(cli, ["list", "memo", "--output", str(tmp_path), "--status", "404",
                                 "--json"])
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["url"] for r in rows] == [site.url + "missing.html"]
    robots = runner.invoke(cli, ["list", "memo", "--output", str(tmp_path), "--failure",
                                 "robots"])
    assert "/private/archive.html" in robots.stdout
    persons = runner.invoke(cli, ["list", "memo", "--output", str(tmp_path), "--url",
                                  r"/persons/\d+\.html$"])
    assert len(persons.stdout.splitlines()) == 30


def test_resume_with_nothing_to_resume(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["resume", "--output", str(tmp_path)])
    assert result.exit_code == 3
    assert "nothing to resume" in result.output
