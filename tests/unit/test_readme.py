"""The README as a newcomer's page (issue 29): short, its command synopsis true to the code, and
every link in it and in docs/ pointing at a file of this repository. Its `<!-- run -->` blocks
run in tests/e2e/test_first_hour.py."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from producers.cli import cli

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PASS_THROUGH = {"worker", "flower"}  # their other options go to celery worker / flower


def synopsis() -> list[str]:
    """Each `ferry …` invocation in the README's Commands block, comments cut."""
    block = re.search(r"## Commands\n\n```\n(.*?)```", README.read_text(), re.S)
    assert block, "the README lost its command synopsis"
    calls = []
    for line in block.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        calls += [c.strip() for c in re.split(r" (?:/|\|) (?=ferry )", line) if c.strip().startswith("ferry ")]
    return calls


def command_of(words: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = cli
    path: list[str] = []
    for word in words[1:]:
        if not isinstance(command, click.Group):
            break
        names = word.split("|")
        if names[0] not in command.commands:
            break
        command = command.commands[names[0]]
        path.append(names[0])
    return command, path


def test_the_readme_stays_under_400_lines() -> None:
    assert len(README.read_text().splitlines()) < 400


@pytest.mark.parametrize("call", synopsis())
def test_each_command_and_option_in_the_synopsis_exists(call: str) -> None:
    words = call.split()
    command, path = command_of(words)
    assert path, f"no such command: {call}"
    if isinstance(command, click.Group):
        return  # e.g. `ferry jira|marketplace|awork …`: the groups exist
    known = {opt for param in command.params for opt in getattr(param, "opts", [])}
    named = {w.strip("[]()|,").split("=")[0] for w in words if w.strip("[(").startswith("--")}
    unknown = {opt for opt in named if opt not in known}
    if path[0] in PASS_THROUGH:
        unknown -= {"--metrics-port"}  # ferry worker's own, read before celery's
        unknown = {opt for opt in unknown if opt in {"--processes"}}
    assert not unknown, f"{call}: {sorted(unknown)}"


def test_every_top_level_command_is_in_the_synopsis() -> None:
    named = {name for call in synopsis() for name in call.split()[1].split("|")}
    assert set(cli.commands) - named == set()


@pytest.mark.parametrize("page", [README, *sorted((REPO / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_every_relative_link_points_at_a_file_of_the_repository(page: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"^(https?:|mailto:|#)", target):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.exists() and REPO in path.parents, f"{page.name}: {target}"
