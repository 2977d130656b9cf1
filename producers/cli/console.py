"""Where the command line writes: one stdout and one stderr console, and the one way to fail."""

from __future__ import annotations

import sys
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """One red line on stderr, then exit (2: bad input, nothing enqueued; 1: it failed)."""
    # escape: messages quote user input and ferry.toml ("[files] roots"), never markup
    err.print(f"[red]error:[/red] {escape(message)}", markup=True)
    sys.exit(code)
