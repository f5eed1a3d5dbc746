"""The repository's documentation stands alone: nothing in it points at design notes kept
outside the repository (their content lives in docs/)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUTSIDE = ("DESIGN.md", "STYLE.md", "../shared")


def test_nothing_refers_to_notes_outside_the_repository() -> None:
    found = []
    for folder in ("crawler", "docs", "tests", "benchmarks", "config", ".ci"):
        for path in sorted((REPO / folder).rglob("*")):
            skip = (not path.is_file() or path == Path(__file__).resolve()
                    or path.suffix not in (".py", ".md", ".toml", "")
                    or "__pycache__" in path.parts)
            if skip:
                continue
            text = path.read_text("utf-8", errors="replace")
            found += [f"{path.relative_to(REPO)}: {word}" for word in OUTSIDE if word in text]
    readme = (REPO / "README.md").read_text("utf-8")
    found += [f"README.md: {word}" for word in OUTSIDE if word in readme]
    assert found == []


def test_every_doc_link_points_at_a_file_of_the_repository() -> None:
    import re

    broken = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text("utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(REPO)} -> {target}")
    assert broken == []
