"""Configuration files: every error names the file, the key and the reason; the shipped files
are valid; the reference documents every key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from crawler.commands.cli import cli
from crawler.core.errors import ConfigError
from crawler.schedule.config import KEYS, TARGET_KEYS, load

REPO = Path(__file__).resolve().parent.parent
GOOD = '''
archives = "out"
[defaults]
per_host = 1
[[targets]]
name = "memo"
seeds = ["https://www.memo.ru/"]
every = "12h"
'''


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "targets.toml"
    path.write_text(text, "utf-8")
    return path


def test_a_valid_file_becomes_settings_and_schedules(tmp_path: Path) -> None:
    config = load(write(tmp_path, GOOD + '''
[[targets]]
name = "lists"
seeds = ["https://lists.memo.ru/"]
scope = "host"
per_host = 3
schedule = "30 2 * * 6"
jitter = "30m"
max_bytes = "5G"
exclude = ['/search']
resolve = { "lists.memo.ru" = "192.0.2.7" }
'''))
    assert config.archives == (tmp_path / "out").resolve()
    memo, lists = config.targets["memo"], config.targets["lists"]
    assert memo.settings.politeness.per_host == 1  # from [defaults]
    assert lists.settings.politeness.per_host == 3  # the target's own value wins
    assert memo.schedule is not None and memo.schedule.every == 43200
    assert lists.schedule is not None and lists.schedule.cron == "30 2 * * 6"
    assert lists.schedule.jitter == 1800 and lists.settings.limits.max_bytes == 5 * 1024**3
    assert lists.settings.fetch.resolve == (("lists.memo.ru", "192.0.2.7"),)
    assert lists.settings.output == config.archives
    assert memo.settings.detect.recheck_probes == 2  # one-off runs re-check...
    assert memo.scheduled.detect.recheck_probes == 0  # ...the daemon confirms across runs


@pytest.mark.parametrize(("text", "key", "reason"), [
    (GOOD.replace("every", "evrey"), "targets[1].evrey", "unknown key"),
    ("colour = 1\n" + GOOD, "colour", "unknown key"),
    (GOOD.replace("per_host = 1", 'per_host = "two"'), "defaults.per_host", "integer"),
    (GOOD.replace('every = "12h"', 'every = "soon"'), "targets[1].every", "duration"),
    (GOOD.replace('every = "12h"', 'schedule = "every day"'), "targets[1].schedule", "cron"),
    (GOOD.replace('every = "12h"', 'exclude = ["(unclosed"]'), "targets[1].exclude",
     "regular expression"),
    (GOOD.replace("https://www.memo.ru/", "ftp://memo.ru/"), "targets[1].seeds", "item 1"),
    (GOOD.replace('seeds = ["https://www.memo.ru/"]', ""), "targets[1].seeds", "required"),
    (GOOD + '[[targets]]\nname = "memo"\nseeds = ["https://a.example/"]\n', "targets[2].name",
     "used twice"),
    (GOOD.replace('every = "12h"', 'every = "12h"\nschedule = "0 3 * * *"'),
     "targets[1].every", "not both"),
    (GOOD.replace('name = "memo"', 'name = "../etc"'), "targets[1].name", "letters"),
    (GOOD.replace("[defaults]", '[defaults]\nname = "x"'), "defaults.name", "per target"),
    (GOOD.replace('every = "12h"', 'robots = "sometimes"'), "targets[1].robots", "obey"),
    ('archives = "out"\n', "targets", "at least one"),
    ('log_file = "../../etc/cron.d/x"\n' + GOOD, "log_file", "inside the archive root"),
    ("archives = [unclosed", "(syntax)", "not valid TOML"),
    (GOOD.replace('every = "12h"', 'vantage = ["ftp://user:pw@proxy:21"]'),
     "targets[1].vantage", "not a proxy URL"),
])
def test_each_error_names_file_key_and_reason(tmp_path: Path, text: str, key: str,
                                             reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text))
    assert caught.value.source == "targets.toml"
    assert caught.value.key == key
    assert reason in caught.value.reason


def test_config_check_command(tmp_path: Path) -> None:
    good = CliRunner().invoke(cli, ["config", "check", str(write(tmp_path, GOOD))])
    assert good.exit_code == 0 and "memo: 1 seed(s)" in good.output
    bad = CliRunner().invoke(cli, ["config", "check", str(write(tmp_path, "x = 1\n" + GOOD))])
    assert bad.exit_code == 3 and "targets.toml: x: unknown key" in bad.output
    missing = CliRunner().invoke(cli, ["config", "check", str(tmp_path / "nope.toml")])
    assert missing.exit_code == 3 and "no such file" in missing.output


@pytest.mark.parametrize("name", ["memorial.toml", "example.toml"])
def test_shipped_configs_are_valid(name: str) -> None:
    config = load(REPO / "config" / name)
    assert config.targets and all(t.schedule for t in config.targets.values())


def test_the_reference_documents_every_key() -> None:
    reference = (REPO / "docs" / "config.md").read_text("utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", reference, re.M))
    assert documented == set(KEYS) | set(TARGET_KEYS)


def test_example_uses_every_target_key() -> None:
    text = (REPO / "config" / "example.toml").read_text("utf-8")
    used = set(re.findall(r"^([a-z_]+) *=", text, re.M))
    assert set(TARGET_KEYS) - used == set()
