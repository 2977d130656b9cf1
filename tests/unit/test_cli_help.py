"""`--help` as a newcomer reads it (issue 29): every command ends with an example, each
`ferry submit` example parses with the options its kind declares, required parameters say so,
the manifest formats and the sandbox's faults are shown where they are used."""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from producers.cli import cli
from producers.cli.examples import EXAMPLES
from producers.kinds import KINDS


def commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name)


def help_of(*path: str) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="ferry", terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", list(commands()), ids=" ".join)
def test_every_command_shows_an_example_of_itself(path: tuple[str, ...]) -> None:
    text = help_of(*path)
    assert "Example:" in text
    assert f"ferry {' '.join(path)}" in text


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_submit_example_parses_and_names_every_required_parameter(kind: str) -> None:
    words = shlex.split(EXAMPLES[f"submit {kind}"])
    assert words[:3] == ["ferry", "submit", kind]
    command = cli.commands["submit"].commands[kind]  # type: ignore[attr-defined]
    with command.make_context(kind, words[3:]) as ctx:  # click's own parsing, no job submitted
        given = {name for name, value in ctx.params.items() if value not in (None, False)}
    required = {name for name, field in KINDS[kind].params.model_fields.items() if field.is_required()}
    assert required <= given
    text = help_of("submit", kind)
    for name in required:
        line = next(ln for ln in text.splitlines() if f"--{name.replace('_', '-')} " in ln)
        assert "[required]" in text[text.index(line):text.index(line) + 300]


def test_a_file_is_not_shown_as_optional_for_kinds_that_upload_one() -> None:
    assert "Usage: ferry submit assets-attachment [OPTIONS] FILE\n" in help_of("submit", "assets-attachment")
    assert "(FILE | --uri URL)" in help_of("submit", "marketplace-artifact")


def test_submit_batch_shows_both_manifest_formats() -> None:
    text = help_of("submit-batch")
    assert '{"kind": "assets-attachment", "connection": "acme"' in text
    assert "kind,connection,file,params.object" in text


def test_the_sandbox_help_says_how_to_inject_a_fault() -> None:
    assert "/_sandbox/faults" in help_of("sandbox")


@pytest.mark.parametrize("path", list(commands()), ids=" ".join)
def test_help_is_plain_text_not_restructuredtext(path: tuple[str, ...]) -> None:
    assert "``" not in help_of(*path)
