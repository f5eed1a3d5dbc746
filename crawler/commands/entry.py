"""The ``crawler`` console script: imports the CLI only when run.

A spawned parser process re-imports its parent's main script; a script that imports
``crawler.commands.cli`` at the top would load the whole CLI into every parser process.
"""


def main() -> None:
    """Run the command line."""
    from crawler.commands.cli import main as run

    run()
