"""Every relative link of README.md and docs/*.md leads to a file of the repository, and its anchor to a
heading of that file: a user's clone has nothing outside the repository (no ``../shared``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, ...


def links(text: str) -> list[str]:
    """The targets of the inline links of a Markdown text, outside code blocks and code spans."""
    return _LINK.findall(_CODE.sub("", _FENCE.sub("", text)))


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces to ``-``."""
    found = set()
    for line in _FENCE.sub("", text).splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            title = heading.group(1).lower().replace("`", "")
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def broken(doc: Path, root: Path = ROOT) -> list[str]:
    text = doc.read_text()
    problems = []
    for target in links(text):
        if _EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.is_relative_to(root):
            problems.append(f"{target}: outside the repository")
        elif not file.exists():
            problems.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            problems.append(f"{target}: no heading #{anchor} in {file.relative_to(root)}")
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_in_the_repository(doc: Path) -> None:
    assert broken(doc) == []


def test_the_architecture_document_is_linked_from_the_readme() -> None:
    assert "docs/architecture.md" in links((ROOT / "README.md").read_text())


def test_the_link_checker_sees_what_it_must(tmp_path: Path) -> None:
    assert links("[a](x.md) `[b](no.md)` [c](https://e.org) [d](y.md#z \"t\")\n```\n[e](no.md)\n```\n") == [
        "x.md", "https://e.org", "y.md#z"]
    assert anchors("# The `edgebridge agent` (x)\n## Scaling\n") == {"the-edgebridge-agent-x", "scaling"}
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.md").write_text("# A\n## Two words\n")
    (tmp_path / "outside.md").write_text("# Outside\n")
    readme = root / "README.md"
    readme.write_text("[1](../outside.md) [2](missing.md) [3](docs/a.md#nope) [4](docs/a.md#two-words) "
                      "[5](docs/a.md) [6](#a) [7](mailto:x@y)\n")
    found = [p.split(":")[0] for p in broken(readme, root)]
    assert found == ["../outside.md", "missing.md", "docs/a.md#nope", "#a"]
