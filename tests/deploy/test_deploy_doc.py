"""docs/deploy.md: every `edgebridge deploy` command in it runs as written (its directory moved to a
temporary one), and its table names exactly the files `deploy init` writes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.deploy.conftest import deploy

DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
DIR = "/srv/edgebridge/secrets"


def _commands() -> list[list[str]]:
    blocks = re.findall(r"^```sh\n(.*?)^```", DOC.read_text(), re.M | re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    return [shlex.split(line) for line in text.splitlines() if line.strip()]


def test_every_deploy_command_of_the_doc_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = _commands()
    assert [c[:3] for c in commands] == [["edgebridge", "deploy", "init"], *[["edgebridge", "deploy",
                                         "add-devices"]] * 2, ["edgebridge", "deploy", "rotate"]]
    (tmp_path / "new-devices.txt").write_text("# added in May\npump-4\npump-5\n")
    out = tmp_path / "secrets"
    monkeypatch.chdir(tmp_path)  # the doc's relative file names
    for command in commands:
        args = [str(out) if a == DIR else a for a in command[2:]]
        assert deploy(*args) == 0, command
    devices = sorted(p.name for p in (out / "devices").iterdir())
    assert devices == ["pump-1", "pump-2", "pump-3", "pump-4", "pump-5"]


def test_the_docs_file_table_is_what_init_writes(tmp_path: Path) -> None:
    out = tmp_path / "secrets"
    assert deploy("init", "--out", str(out), "--devices", "ID") == 0
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    table = DOC.read_text().split("## What each file is", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for row in table.splitlines():
        if row.startswith("| `"):
            documented |= set(re.findall(r"`([\w/.-]+)`", row.split(" | ")[0]))
    assert len(written) == 13 and documented == written
