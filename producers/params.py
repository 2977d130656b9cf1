"""Typed parameters per job kind, shared by the CLI, the Python API and the HTTP API.

Field names are the CLI option names in snake_case (``object_type`` is ``--object-type``). Values
coming from a command line arrive as strings; pydantic coerces them (``"2"`` → 2, JSON text →
list). Field descriptions are the CLI's ``--help`` text.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, NamedTuple, get_args
from urllib.parse import unquote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# ---- values that become one segment of a destination's URL path ---------------------------------
# The worker encodes every path value (worker.http.Route) and refuses what is not one segment;
# refusing it here too means a hostile value is a clear 422 / exit 2, never a stored job.
SEGMENT_MAX = 128
_SEGMENT = re.compile(rf"(?!\.+$)[A-Za-z0-9_:.-]{{1,{SEGMENT_MAX}}}")
_NUMERIC = re.compile(r"[0-9]{1,18}")
_PROJECT_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,254}")  # Jira's key form (admins may allow '_')


def path_segment(value: str) -> str:
    if not _SEGMENT.fullmatch(value):
        raise ValueError(f"must be one URL path segment: 1-{SEGMENT_MAX} letters, digits, '-', '_', "
                         "':' or '.' (not only dots); no '/', '?', '#', '%', spaces or other characters")
    return value


def numeric_id(value: str) -> str:
    if not _NUMERIC.fullmatch(value):
        raise ValueError("must be a numeric id (ASCII digits only, at most 18)")
    return value


PathSegment = Annotated[str, AfterValidator(path_segment)]
NumericId = Annotated[str, AfterValidator(numeric_id)]


class AssetsTarget(Params):
    workspace: PathSegment | None = Field(
        default=None, description="Assets workspace id; discovered from the site (and cached) if omitted")


class AssetsAvatarParams(AssetsTarget):
    object_type: int = Field(description="object type id (needed for the upload and the object)")
    object: PathSegment | None = Field(default=None, description="edit this existing object")
    attributes: list[dict[str, Any]] | None = Field(
        default=None,
        description='create a new object with these attributes: JSON, either Assets\' own list '
        '[{"objectTypeAttributeId": "11", "objectAttributeValues": [{"value": "x"}]}] '
        'or the shorthand {"11": "x"}',
    )

    @field_validator("attributes", mode="before")
    @classmethod
    def _attributes(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc.msg})") from None
        if isinstance(value, dict):
            value = [
                {"objectTypeAttributeId": str(k),
                 "objectAttributeValues": [{"value": v} for v in (vs if isinstance(vs, list) else [vs])]}
                for k, vs in value.items()
            ]
        return value

    @model_validator(mode="after")
    def _object_or_attributes(self) -> AssetsAvatarParams:
        if (self.object is None) == (self.attributes is None):
            raise ValueError("give exactly one of object (edit) or attributes (create)")
        return self


class AssetsAttachmentParams(AssetsTarget):
    object: PathSegment = Field(description="the object the file is attached to")
    comment: str = Field(default="", description="attachment comment")


# ---- Jira avatars, Marketplace assets, awork profile images ------------------------------------
JiraAvatarType = Literal["project", "issuetype", "priority"]
# Marketplace v2 image types are UNCONFIRMED (shared/apis/README.md §4): the candidates from the
# docs' wording and examples. Refusing anything else at submit beats a failure in the worker.
MarketplaceImageType = Literal["logo", "banner", "screenshot", "screenshot-thumbnail", "hero",
                               "title-logo", "icon"]
MARKETPLACE_IMAGE_TYPES: tuple[str, ...] = get_args(MarketplaceImageType)
AworkEntity = Literal["companies", "contactpersons", "projects", "projecttemplates", "users",
                      "workspaces"]


class Crop(NamedTuple):
    x: int
    y: int
    size: int

    def inside(self, width: int, height: int) -> bool:
        return self.size > 0 and self.x + self.size <= width and self.y + self.size <= height


class JiraAvatarTarget(Params):
    type: JiraAvatarType = Field(description="whose avatar: project, issuetype or priority")
    owner: str = Field(description="id of the project (or its key), issue type or priority")

    @field_validator("owner")
    @classmethod
    def _owner_form(cls, owner: str, info: ValidationInfo) -> str:
        """Jira documents numeric ids for all three; a project may also be named by its key."""
        kind = info.data.get("type", "project")
        if _NUMERIC.fullmatch(owner) or (kind == "project" and _PROJECT_KEY.fullmatch(owner)):
            return owner
        wanted = "a numeric project id or a project key such as FERRY" if kind == "project" \
            else f"a numeric {kind} id"
        raise ValueError(f"must be {wanted}")


class JiraAvatarParams(JiraAvatarTarget):
    x: int | None = Field(default=None, ge=0, description="left edge of the crop square, px")
    y: int | None = Field(default=None, ge=0, description="top edge of the crop square, px")
    size: int | None = Field(
        default=None, gt=0,
        description="side of the crop square, px. With no crop at all Ferry sends the largest "
        "CENTRED square (the API's own default is the top-left square); a missing --x/--y "
        "centres that axis, a missing --size takes the largest square that fits")
    set_current: bool = Field(
        default=False, description="also make the new avatar the current one of its owner")

    def crop(self, width: int, height: int) -> Crop:
        """The square to send for an image of width x height (see ``size``'s description)."""
        size = self.size or min(width - (self.x or 0), height - (self.y or 0))
        x = self.x if self.x is not None else max(0, (width - size) // 2)
        y = self.y if self.y is not None else max(0, (height - size) // 2)
        return Crop(x, y, size)

    @property
    def crop_given(self) -> bool:
        return not (self.x is None and self.y is None and self.size is None)


class JiraAvatarDeleteParams(JiraAvatarTarget):
    avatar: NumericId = Field(description="id of the custom avatar to delete")


class MarketplaceArtifactParams(Params):
    """No options: the artifact is the FILE argument or --uri."""


class MarketplaceImageParams(Params):
    image_type: MarketplaceImageType = Field(
        description=f"what the image is for: {', '.join(MARKETPLACE_IMAGE_TYPES)}")


def asset_name(ref: str) -> str:
    """The asset's name from a name, a ``/rest/2/assets/...`` path or a full ``_links.self`` URL."""
    path = urlsplit(ref).path if "://" in ref else ref
    marker = "/rest/2/assets/"
    if marker in path:
        path = path.split(marker, 1)[1]
    return unquote(path)


def marketplace_asset(value: str) -> str:
    """A name as Marketplace gives them (``images/<uuid>.png``, ``artifacts/<uuid>.jar``): one or
    two segments. The worker sends the whole name as ONE path segment (its '/' as %2F)."""
    parts = asset_name(value).split("/")
    if len(parts) > 2 or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise ValueError("must be an asset name such as images/<uuid>.png (or its _links.self URL): "
                         "at most two parts of letters, digits, '-', '_', ':' or '.'")
    return value


class MarketplaceAssetDeleteParams(Params):
    asset: Annotated[str, AfterValidator(marketplace_asset)] = Field(
        description="asset name (images/<uuid>.png) or its _links.self URL; only the uploader can "
        "delete it, and only while nothing uses it")


class AworkImageParams(Params):
    entity: AworkEntity = Field(description=f"whose profile image: {', '.join(get_args(AworkEntity))}")
    id: PathSegment = Field(description="id of the company / contact person / project / … in awork")
