"""`python -m sandbox [--port 8900] [--data DIR] [--email E] [--token T] [--bearer B] [--seed]`."""

from __future__ import annotations

import argparse

from sandbox import (
    DEFAULT_BEARER,
    DEFAULT_DATA_DIR,
    DEFAULT_EMAIL,
    DEFAULT_HOST,
    DEFAULT_JWT_TTL,
    DEFAULT_PORT,
    DEFAULT_TOKEN,
)
from sandbox.server import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--data", default=DEFAULT_DATA_DIR, help="where received files go")
    parser.add_argument("--email", default=DEFAULT_EMAIL)
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="API token for Basic auth")
    parser.add_argument("--bearer", default=DEFAULT_BEARER, help="awork bearer token")
    parser.add_argument("--seed", action="store_true", help="create entities to land on")
    parser.add_argument("--jwt-ttl", type=int, default=DEFAULT_JWT_TTL, help="media JWT seconds")
    args = parser.parse_args(argv)
    run(
        args.host,
        args.port,
        args.data,
        args.email,
        args.token,
        args.bearer,
        args.seed,
        args.jwt_ttl,
    )


if __name__ == "__main__":
    main()
