"""Where the command line writes: one stdout and one stderr console, and the one way to fail."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """One red line on stderr per line of ``message``, then exit (2: bad input, nothing enqueued;
    1: it failed)."""
    # escape: messages quote user input and ferry.toml ("[files] roots"), never markup
    for line in message.splitlines() or [""]:
        err.print(f"[red]error:[/red] {escape(line)}", markup=True)
    sys.exit(code)


@contextmanager
def needs_extra(extra: str, what: str) -> Iterator[None]:
    """Imports made inside that fail (an install without ``extra``) end in one line naming the
    extra to install, not a traceback."""
    try:
        yield
    except ImportError as exc:
        fail(f"{what} needs the {extra} extra (pip install 'ferry[{extra}]'): {exc}")
