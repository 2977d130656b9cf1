"""THE flow declarations: every job kind, its parameters, its file rule and its steps, side by side.

Everything else is derived from this table: the CLI's ``submit`` commands, the HTTP API's
validation, the Celery chain (one task per step name, ``ferry.step.<name>``), the job record's
step list, replay's starting point and the dashboard's timeline. Step *implementations* live in
``worker.steps`` under the same names (a test checks that each declared step has one).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from producers.errors import Problem, SubmitError
from producers.files import FileRule
from producers.params import (
    AssetsAttachmentParams,
    AssetsAvatarParams,
    AworkImageParams,
    JiraAvatarDeleteParams,
    JiraAvatarParams,
    MarketplaceArtifactParams,
    MarketplaceAssetDeleteParams,
    MarketplaceImageParams,
    Params,
)
from producers.records import FileInfo

MB = 1024 * 1024
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")
MARKETPLACE_IMAGE_MIME = ("image/png", "image/jpeg", "image/gif", "image/bmp")  # .jpg .png .gif .bmp
AWORK_IMAGE_MIME = ("image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp")
# awork: "must not exceed 100MB". Whether MB is 10^6 or 2^20 is not said; 10^6 is the stricter
# reading, so a file we accept is accepted whichever awork means.
AWORK_MAX_BYTES = 100 * 1000 * 1000


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
    file: FileRule | None = field(default_factory=FileRule)
    # The keys of the steps' outputs that say where the file landed: they become the job's
    # ``result`` (CLI, API, dashboard). Empty: every output key.
    landed: tuple[str, ...] = ()
    # Extra checks that need both the parameters and the inspected file (crop inside the image…).
    check: Callable[[Params, FileInfo | None], list[Problem]] | None = field(default=None)

    @functools.cached_property
    def step_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps)

    def result_of(self, outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The job's result from its steps' outputs: the ``landed`` keys (later steps win)."""
        merged: dict[str, Any] = {}
        for name in self.step_names:
            merged.update(outputs.get(name, {}))
        return {k: merged[k] for k in self.landed if k in merged} if self.landed else merged

    def parse_params(self, params: dict[str, Any]) -> tuple[Params | None, list[Problem]]:
        """The kind's typed parameters, or every problem with them (at submit, and again in the
        worker before any request: a record that skipped validation sends nothing)."""
        try:
            return self.params.model_validate(params), []
        except ValidationError as exc:
            return None, [Problem(".".join(str(x) for x in e["loc"]) or "params",
                                  str(e["msg"]).removeprefix("Value error, ")) for e in exc.errors()]

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


def crop_inside_image(params: Params, info: FileInfo | None) -> list[Problem]:
    """jira-avatar: the crop square (given, or Ferry's centred default) must lie in the image."""
    assert isinstance(params, JiraAvatarParams)
    if info is None or info.width is None or info.height is None:
        return []  # size unreadable from the file's head: the worker reads it (or Jira checks)
    crop = params.crop(info.width, info.height)
    if crop.inside(info.width, info.height):
        return []
    return [Problem("crop", f"x={crop.x} y={crop.y} size={crop.size} reaches outside the "
                            f"{info.width}x{info.height} image")]


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            name="assets-avatar",
            service="atlassian",
            summary="Assets object avatar: upload the image, then set the server's UUID on the object",
            params=AssetsAvatarParams,
            file=FileRule(mime_types=IMAGE_TYPES, image=True),
            landed=("object_id", "object_key", "avatar_uuid", "created", "workspace_id"),
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
            landed=("object_id", "attachment_id", "media_id", "already_linked", "workspace_id"),
            steps=(
                Step("get_credentials", "Get upload credentials"),
                Step("media_upload", "Upload to media service", needs_secret_of="get_credentials"),
                Step("link_attachment", "Link attachment"),
            ),
        ),
        Kind(
            name="jira-avatar",
            service="atlassian",
            summary="Jira project / issue type / priority avatar: load the image cropped to a "
            "square, optionally make it current",
            params=JiraAvatarParams,
            file=FileRule(mime_types=IMAGE_TYPES, image=True),
            check=crop_inside_image,
            landed=("avatar_id", "type", "owner", "crop", "adopted", "set_current"),
            # Both steps always: the chain, the record's timeline and replay stay a property of
            # the kind alone; without --set-current the second step records set_current=false.
            steps=(
                Step("load_avatar", "Load avatar"),
                Step("set_current_avatar", "Make avatar current"),
            ),
        ),
        Kind(
            name="jira-avatar-delete",
            service="atlassian",
            summary="Delete a custom Jira avatar of a project / issue type / priority",
            params=JiraAvatarDeleteParams,
            file=None,
            steps=(Step("delete_avatar", "Delete avatar"),),
        ),
        Kind(
            name="marketplace-artifact",
            service="marketplace",
            summary="Marketplace app artifact (.jar/.obr): upload FILE, or with --uri have "
            "Marketplace fetch it; the result's asset_link goes into the app version",
            params=MarketplaceArtifactParams,
            file=FileRule(uri_allowed=True, extensions=(".jar", ".obr")),
            landed=("asset_link", "asset_name", "logical_file_name", "size", "fetched_from"),
            steps=(Step("upload_artifact", "Upload artifact"),),
        ),
        Kind(
            name="marketplace-image",
            service="marketplace",
            summary="Marketplace image (logo, banner, screenshot…); the result's asset_link goes "
            "into the app or vendor",
            params=MarketplaceImageParams,
            file=FileRule(mime_types=MARKETPLACE_IMAGE_MIME),
            landed=("asset_link", "asset_name", "image_type", "logical_file_name", "size"),
            steps=(Step("upload_image", "Upload image"),),
        ),
        Kind(
            name="marketplace-asset-delete",
            service="marketplace",
            summary="Delete a stored Marketplace asset (artifact or image)",
            params=MarketplaceAssetDeleteParams,
            file=None,
            steps=(Step("delete_asset", "Delete asset"),),
        ),
        Kind(
            name="awork-image",
            service="awork",
            summary="awork profile image of a company, contact person, project, project template, "
            "user or workspace (replaces the current one)",
            params=AworkImageParams,
            file=FileRule(mime_types=AWORK_IMAGE_MIME, max_bytes=AWORK_MAX_BYTES),
            steps=(Step("upload_profile_image", "Upload profile image"),),
        ),
        Kind(
            name="awork-image-delete",
            service="awork",
            summary="Delete the awork profile image of an entity",
            params=AworkImageParams,
            file=None,
            steps=(Step("delete_profile_image", "Delete profile image"),),
        ),
    )
}


# A kind's name as a type: validated, and an enum in the HTTP API's document.
if TYPE_CHECKING:
    KindName = str
else:
    KindName = Literal[tuple(KINDS)]


def get_kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise SubmitError([Problem("kind", f"unknown kind {name!r} (known: {', '.join(KINDS)})")]) from None


def all_step_names() -> set[str]:
    return {s.name for k in KINDS.values() for s in k.steps}
