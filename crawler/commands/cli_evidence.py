"""`crawler evidence`: per-event evidence packages, their signing keys and their checking.

``crawler evidence TARGET EVENT|URL…`` builds a package (the default subcommand, ``make``);
``crawler evidence keygen`` creates the signing key pair; ``crawler evidence verify FILE``
checks a package. Registered on the main group by ``cli.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from crawler.capture.settings import ARCHIVES
from crawler.commands.cli_tools import open_catalog
from crawler.core.errors import CrawlerError, ExitCode
from crawler.evidence import DEFAULT_KEY


class _Evidence(click.Group):
    """A group whose first word, if it is not a subcommand, starts ``make``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["make", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_Evidence)
def evidence() -> None:
    """Evidence packages a reader can hand on, one per takedown event.

    \b
      crawler evidence TARGET EVENT|URL… [--out FILE] [--key KEY] [--tsa URL]
      crawler evidence keygen [--key KEY]
      crawler evidence verify PACKAGE [--tsa-ca CA.pem]

    A package is a BagIt bag (zipped): a signed WACZ of the records behind the finding,
    the finding, the catalog history and a plain summary, with SHA-256 of every file.
    See docs/evidence.md.
    """


@evidence.command()
@click.argument("target")
@click.argument("items", nargs=-1, required=True, metavar="EVENT|URL…")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=ARCHIVES, show_default=True, help="Archive root.")
@click.option("--out", "dest", type=click.Path(path_type=Path),
              help="The package: FILE.zip (a zipped bag) or a new folder (default: "
                   "OUTPUT/TARGET/evidence/evidence-….zip).")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path),
              help=f"Signing key (made by `crawler evidence keygen`; default {DEFAULT_KEY} "
                   "when it exists).")
@click.option("--unsigned", is_flag=True, help="Do not sign, even if a key exists.")
@click.option("--tsa", metavar="URL", help="RFC 3161 time-stamping authority to stamp the "
              "package's manifest (needs the openssl command).")
@click.option("--tsa-ca", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The authority's CA certificate, kept in the package for checking.")
@click.option("--operator", help="Who makes the package (bag-info Source-Organization).")
def make(target: str, items: tuple[str, ...], output: Path, dest: Path | None,
         key_path: Path | None, unsigned: bool, tsa: str | None, tsa_ca: Path | None,
         operator: str | None) -> None:
    """Package the evidence of EVENT ids (from `crawler status`, the dashboard or
    report.json's events) or URLs of TARGET."""
    from crawler.evidence import signing
    from crawler.evidence.package import build, default_path

    key = None
    try:
        if not unsigned and (key_path is not None or DEFAULT_KEY.is_file()):
            key = signing.load(key_path or DEFAULT_KEY)
        with open_catalog(output, read_only=True) as catalog:
            path = dest or default_path(output, target, list(items))
            built = build(catalog, target, list(items), path, key=key, tsa=tsa,
                          tsa_ca=tsa_ca, operator=operator)
    except CrawlerError as exc:
        click.echo(f"crawler: error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    except (OSError, FileExistsError) as exc:
        click.echo(f"crawler: error: {exc}", err=True)
        sys.exit(int(ExitCode.CONFIG))
    for subject in built.selection.subjects:
        name = subject.names.get("headline") or subject.names.get("title") or ""
        state = subject.events[-1] if subject.events else None
        click.echo(f"{subject.url}" + (f" «{name}»" if name else "")
                   + (f": {state['class']} ({state['state']})" if state else ""))
    click.echo(f"{built.records} record(s) packaged"
               + (f"; signed, key fingerprint {built.fingerprint}" if built.fingerprint
                  else "; NOT signed (no key: `crawler evidence keygen`)")
               + (f"; time-stamped {built.stamp.time}" if built.stamp else
                  "; no trusted time-stamp (--tsa URL)"))
    for note in built.notes:
        click.echo(f"  not packaged: {note}")
    click.echo(str(built.path))


@evidence.command()
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path),
              default=DEFAULT_KEY, show_default=True, help="Where to write the private key.")
def keygen(key_path: Path) -> None:
    """Create the ECDSA P-384 key pair that signs evidence packages.

    The private key is written readable by you only; the public key beside it
    (.pub.pem). Publish the fingerprint it prints (on your website, in a letter): readers
    compare it with the one a package shows. An existing key is never overwritten.
    """
    from crawler.evidence import signing

    try:
        key = signing.generate(key_path)
    except CrawlerError as exc:
        click.echo(f"crawler: error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    click.echo(f"private key: {key.path}")
    click.echo(f"public key:  {signing.public_path_of(key.path)}")
    click.echo(f"fingerprint (SHA-256): {key.fingerprint}")


@evidence.command(name="verify")
@click.argument("package", type=click.Path(exists=True, path_type=Path))
@click.option("--tsa-ca", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The time-stamping authority's CA certificate you trust.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def verify_command(package: Path, tsa_ca: Path | None, as_json: bool) -> None:
    """Check a package's hashes, signatures and time-stamp, and say what it proves.

    Exit 0 if every check passed, 7 if any failed.
    """
    import json

    from crawler.evidence.verify import verify

    verdict = verify(package, tsa_ca)
    if as_json:
        data: dict[str, Any] = {"ok": verdict.ok,
                                "checks": [{"passed": p, "check": t} for p, t in verdict.checks],
                                "proves": verdict.proves, "does_not_prove": verdict.not_proven}
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        for passed, text in verdict.checks:
            click.echo(f"{'OK  ' if passed else 'FAIL'} {text}")
        if verdict.ok:
            click.echo("\nWhat this proves:")
            for line in verdict.proves:
                click.echo(f"  - {line}")
        else:
            click.echo("\nA check failed: the package cannot be relied on as it is.")
        click.echo("What it does not prove:")
        for line in verdict.not_proven:
            click.echo(f"  - {line}")
        click.echo("VALID" if verdict.ok else "NOT VALID")
    sys.exit(0 if verdict.ok else int(ExitCode.DAMAGED))
