"""Typed parameters per job kind, shared by the CLI, the Python API and the HTTP API.

Field names are the CLI option names in snake_case (``object_type`` is ``--object-type``). Values
coming from a command line arrive as strings; pydantic coerces them (``"2"`` → 2, JSON text →
list). Field descriptions are the CLI's ``--help`` text.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AssetsTarget(Params):
    workspace: str | None = Field(
        default=None, description="Assets workspace id; discovered from the site (and cached) if omitted")


class AssetsAvatarParams(AssetsTarget):
    object_type: int = Field(description="object type id (needed for the upload and the object)")
    object: str | None = Field(default=None, description="edit this existing object")
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
    object: str = Field(description="the object the file is attached to")
    comment: str = Field(default="", description="attachment comment")
