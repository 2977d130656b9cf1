"""THE flow declarations: every job kind, its parameters, its file rule and its steps, side by side.

Everything else is derived from this table: the CLI's ``submit`` commands, the HTTP API's
validation, the Celery chain (one task per step name, ``ferry.step.<name>``), the job record's
step list, replay's starting point and the dashboard's timeline. Step *implementations* live in
``worker.steps`` under the same names (a test checks that each declared step has one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from producers.errors import Problem, SubmitError
from producers.files import FileRule
from producers.params import AssetsAttachmentParams, AssetsAvatarParams, Params
from producers.records import FileInfo

MB = 1024 * 1024
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    # Replay: this step needs the short-lived secret another step produced (the media JWT). When
    # that secret has expired, replay goes back to the producing step instead of failing again.
    needs_secret_of: str | None = None


@dataclass(frozen=True)
class Kind:
    name: str
    service: str  # the connection's service this kind talks to
    summary: str
    params: type[Params]
    steps: tuple[Step, ...]
    file: FileRule | None = FileRule()
    # Extra checks that need both the parameters and the inspected file (crop inside the image…).
    check: Callable[[Params, FileInfo | None], list[Problem]] | None = field(default=None)

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps)

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            name="assets-avatar",
            service="atlassian",
            summary="Assets object avatar: upload the image, then set the server's UUID on the object",
            params=AssetsAvatarParams,
            file=FileRule(mime_types=IMAGE_TYPES, image=True),
            steps=(
                Step("upload_avatar", "Upload avatar"),
                Step("set_object_avatar", "Set avatar on object"),
            ),
        ),
        Kind(
            name="assets-attachment",
            service="atlassian",
            summary="Assets object attachment: credentials, media upload, link to the object",
            params=AssetsAttachmentParams,
            steps=(
                Step("get_credentials", "Get upload credentials"),
                Step("media_upload", "Upload to media service", needs_secret_of="get_credentials"),
                Step("link_attachment", "Link attachment"),
            ),
        ),
    )
}


def get_kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise SubmitError([Problem("kind", f"unknown kind {name!r} (known: {', '.join(KINDS)})")]) from None


def all_step_names() -> set[str]:
    return {s.name for k in KINDS.values() for s in k.steps}
