"""`python -m sandbox [--port 8900] [--data DIR] [--email E] [--token T] [--bearer B] [--seed]`."""

from __future__ import annotations

import argparse
from typing import Any

from sandbox import (
    DEFAULT_BEARER,
    DEFAULT_DATA_DIR,
    DEFAULT_EMAIL,
    DEFAULT_HOST,
    DEFAULT_JWT_TTL,
    DEFAULT_PORT,
    DEFAULT_TOKEN,
)
from sandbox.server import open_readings, run
from sandbox.state import ARTIFACT_FORMS, AWORK_429_SHAPES, MEDIA_UPLOAD_READINGS


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
    add_reading_options(parser)
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
        readings_of(args),
    )


def add_reading_options(parser: argparse.ArgumentParser) -> None:
    """The open readings (sandbox/control.py OPEN_READINGS) as command-line switches."""
    group = parser.add_argument_group("open readings of the real APIs")
    group.add_argument("--media-upload", choices=MEDIA_UPLOAD_READINGS, default="multipart",
                       help="which upload form stores the bytes (binary: POST /file makes an empty file; "
                            "multipart-sizeless: multipart, answered without a size)")
    group.add_argument("--no-media-read-back", action="store_true",
                       help="GET /media/file/{id} answers 403 (an upload-only token)")
    group.add_argument("--no-attachment-media-id", action="store_true",
                       help="attachment records without mediaId (the documented Data Center shape)")
    group.add_argument("--empty-link-answer", action="store_true", help="link answers 201 with no body")
    group.add_argument("--lenient-link-size", action="store_true",
                       help="the link accepts a size other than the media's; records show the stored size")
    group.add_argument("--artifact-form", choices=ARTIFACT_FORMS, default="multipart",
                       help="the Marketplace artifact form accepted; the other answers 415")
    group.add_argument("--awork-429", choices=AWORK_429_SHAPES, default="awork",
                       help="awork 429 shape (kong: Retry-After and {\"message\"})")
    group.add_argument("--refuse-project-keys", action="store_true",
                       help="universal_avatar project owners must be ids, as documented")


def readings_of(args: argparse.Namespace) -> dict[str, Any]:
    return open_readings(args.media_upload, args.no_attachment_media_id, args.empty_link_answer,
                         args.refuse_project_keys, no_media_read_back=args.no_media_read_back,
                         lenient_link_size=args.lenient_link_size, artifact_form=args.artifact_form,
                         awork_429=args.awork_429)


if __name__ == "__main__":
    main()
