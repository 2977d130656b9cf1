"""In-memory state of the sandbox: configuration, seed, entities, received files, request log.

Everything lives in one process (the ASGI app is async and single-threaded), so plain dicts are
safe without locks. Only file bytes live on disk (see blobs.py).
"""

from __future__ import annotations

import itertools
import secrets
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sandbox import (
    DEFAULT_BEARER,
    DEFAULT_EMAIL,
    DEFAULT_JWT_TTL,
    DEFAULT_TOKEN,
)

# Marketplace v2 image keys as Atlassian's own Java client names them (ImagePurpose); `icon` is a
# v3 example, not a v2 key (open-readings §5). Configurable.
DEFAULT_IMAGE_TYPES = (
    "logo",
    "banner",
    "screenshot",
    "screenshot-thumbnail",
    "hero",
    "title-logo",
)
MEDIA_UPLOAD_READINGS = ("multipart", "binary", "multipart-sizeless")
ARTIFACT_FORMS = ("multipart", "raw")
AWORK_429_SHAPES = ("awork", "kong")
CHOICES = {"media_upload": MEDIA_UPLOAD_READINGS, "artifact_form": ARTIFACT_FORMS,
           "awork_429": AWORK_429_SHAPES}
AWORK_KINDS = ("companies", "contactpersons", "projects", "projecttemplates", "users", "workspaces")
REQUEST_LOG_SIZE = 10_000
# Upload records are bounded too, so long benchmarks cannot grow memory without limit.
UPLOAD_LOG_SIZE = 100_000


@dataclass
class Config:
    """Runtime-tunable settings (POST /_sandbox/config changes them, reset restores them)."""

    email: str = DEFAULT_EMAIL
    token: str = DEFAULT_TOKEN
    bearer: str = DEFAULT_BEARER
    jwt_ttl_seconds: int = DEFAULT_JWT_TTL
    # Assets 429s were documented to lack Retry-After (JSDCLOUD-11605); default mimics that.
    assets_retry_after: bool = False
    marketplace_image_types: list[str] = field(default_factory=lambda: list(DEFAULT_IMAGE_TYPES))
    # awork says "must not exceed 100MB"; we read MB as 10^6 (the stricter reading).
    awork_max_bytes: int = 100_000_000
    # Extra Basic credentials ([email, token] pairs), e.g. to test "only the uploader may delete".
    extra_basic: list[list[str]] = field(default_factory=list)
    # Open readings of the real APIs (shared/apis/open-readings.md); the sandbox plays one each.
    # "multipart": POST /media/file stores the multipart part `file`, /media/file/binary is gone.
    # "binary": POST /media/file creates an EMPTY file (no size in the answer); the bytes go raw
    # to /media/file/binary (Atlassian's own media client).
    # "multipart-sizeless": as "multipart", but the answer carries no size.
    media_upload: str = "multipart"
    # GET /media/file/{id} answers the metadata; False: 403 (an upload-only token).
    media_read_back: bool = True
    # The link refuses a size other than the media's; False: it accepts any, and the record
    # shows the size the media service stored.
    link_checks_size: bool = True
    # Marketplace artifacts: "multipart" (part `file`, the v2 docs' newer page) or "raw"
    # (application/binary body, ?file=, Atlassian's Java client); the other form answers 415.
    artifact_form: str = "multipart"
    # awork 429s: "awork" (RateLimit-* headers, awork's error body) or "kong" (its gateway:
    # Retry-After and {"message": ...}).
    awork_429: str = "awork"
    # Attachment records carry `mediaId` (+ `size`); False: the documented DC record only.
    attachment_media_id: bool = True
    # The link answers the created records; False: an empty 201.
    link_answer_body: bool = True
    # universal_avatar owners of type project may be keys; False: ids only (documented), a key 404s.
    project_owner_keys: bool = True

    def check(self, key: str, value: Any) -> str | None:
        """Why ``value`` cannot be set for ``key`` (None if it can)."""
        if key not in self.__dataclass_fields__:
            return f"unknown config key: {key}"
        current = getattr(self, key)
        if key in CHOICES and value not in CHOICES[key]:
            return f"{key} must be one of {', '.join(CHOICES[key])}"
        if isinstance(current, bool) and not isinstance(value, bool):
            return f"{key} must be true or false"
        return None

    def public(self) -> dict[str, Any]:
        """Config as JSON, secrets included on purpose: the sandbox's tokens are not secrets."""
        return asdict(self)


@dataclass
class Blob:
    """A file received and stored on disk under blobs/{sha256}."""

    sha256: str
    size: int
    path: Path
    filename: str | None = None
    content_type: str | None = None


@dataclass
class RequestRecord:
    time: float
    method: str
    path: str
    status: int
    verdict: str
    credential: str | None
    service: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FaultRule:
    id: str
    path: str
    method: str | None = None
    status: int | None = None
    times: int | None = None
    probability: float | None = None
    retry_after: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    latency_ms: int = 0  # the request is held unread this long, then served (a stall when long)
    read_kib_per_s: float | None = None  # the body is read at this rate (a slow, steady link)
    message: str | None = None  # the error message the answer carries (default: names the fault)
    cut: bool = False
    # Process the request for real, then lose the reply: answer `status` (502) or cut.
    lost_reply: bool = False
    hits: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Seed:
    """Ids of the seeded entities; kept across /_sandbox/reset so tests can rely on them."""

    workspace_id: str
    object_type_id: str
    object_id: str
    project_id: str
    project_key: str
    issuetype_id: str
    priority_id: str
    awork: dict[str, str]

    @classmethod
    def create(cls) -> Seed:
        return cls(
            workspace_id=str(uuid.uuid4()),
            object_type_id="1",
            object_id="1",
            project_id="10000",
            project_key="FERRY",
            issuetype_id="10001",
            priority_id="3",
            awork={kind: str(uuid.uuid4()) for kind in AWORK_KINDS},
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class State:
    """All mutable sandbox state. `reset()` rebuilds it, re-creating the seed with the same ids."""

    def __init__(self, data_dir: Path, config: Config, seed: Seed | None) -> None:
        self.data_dir = data_dir
        self.initial_config = Config(**asdict(config))
        self.seed = seed
        # The JWT secret survives resets so credentials fetched before a reset stay verifiable.
        self.jwt_secret = secrets.token_bytes(32)
        self.requests: deque[RequestRecord] = deque(maxlen=REQUEST_LOG_SIZE)
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        # A request that arrived before this reset (a killed worker's upload still held by a
        # latency fault, say) belongs to the state before it: it is neither logged nor applied.
        self.generation += 1
        self.config = Config(**asdict(self.initial_config))
        self.requests.clear()
        self.faults: dict[str, FaultRule] = {}
        self.rate_per_second: float | None = None
        self.buckets: Any = None  # faults.TokenBuckets when a rate limit is set
        self.uploads: deque[dict[str, Any]] = deque(maxlen=UPLOAD_LOG_SIZE)
        self.ids = itertools.count(100)
        # Assets
        self.workspaces: dict[str, dict[str, Any]] = {}
        self.object_types: dict[str, dict[str, Any]] = {}
        self.objects: dict[str, dict[str, Any]] = {}
        self.object_ids = itertools.count(1)
        self.assets_avatars: dict[str, dict[str, Any]] = {}  # server UUID -> avatar record
        self.client_avatar_uuids: set[str] = set()
        self.media_files: dict[str, dict[str, Any]] = {}
        self.attachments: dict[str, dict[str, Any]] = {}
        self.attachment_ids = itertools.count(1)
        # Jira
        self.projects: dict[str, dict[str, Any]] = {}
        self.issuetypes: dict[str, dict[str, Any]] = {}
        self.priorities: dict[str, dict[str, Any]] = {}
        self.jira_avatars: dict[str, dict[str, Any]] = {}
        self.jira_avatar_ids = itertools.count(10500)
        # Marketplace
        self.mp_assets: dict[str, dict[str, Any]] = {}
        # awork
        self.awork_entities: dict[str, set[str]] = {kind: set() for kind in AWORK_KINDS}
        self.awork_images: dict[str, dict[str, Any]] = {}
        self._seed_system_avatars()
        if self.seed is not None:
            self._apply_seed(self.seed)

    def _seed_system_avatars(self) -> None:
        # A few system avatars per type; ids mimic Jira's 10300-range system avatars.
        avatar_id = 10300
        for avatar_type in ("project", "issuetype", "priority", "user"):
            for n in range(3):
                self.jira_avatars[str(avatar_id)] = {
                    "id": str(avatar_id),
                    "type": avatar_type,
                    "owner": None,
                    "system": True,
                    "fileName": f"{avatar_type}-{n}.svg",
                    "blob": None,
                    "crop": None,
                    "color": avatar_id,
                }
                avatar_id += 1

    def default_avatar_id(self, avatar_type: str) -> str:
        return next(str(a["id"]) for a in self.jira_avatars.values() if a["type"] == avatar_type)

    def _apply_seed(self, seed: Seed) -> None:
        ws = seed.workspace_id
        self.workspaces[ws] = {"workspaceId": ws}
        self.object_types[seed.object_type_id] = {
            "id": seed.object_type_id,
            "name": "Ferry Sandbox Type",
            "workspaceId": ws,
        }
        self.objects[seed.object_id] = {
            "id": seed.object_id,
            "workspaceId": ws,
            "objectTypeId": seed.object_type_id,
            "label": "Ferry sandbox object",
            "objectKey": f"FER-{seed.object_id}",
            "attributes": [],
            "avatarUUID": None,
            "hasAvatar": False,
            "created": iso_now(),
            "updated": iso_now(),
        }
        self.object_ids = itertools.count(int(seed.object_id) + 1)
        self.projects[seed.project_id] = {
            "id": seed.project_id,
            "key": seed.project_key,
            "name": "Ferry Sandbox",
            "avatarId": self.default_avatar_id("project"),
        }
        self.issuetypes[seed.issuetype_id] = {
            "id": seed.issuetype_id,
            "name": "Task",
            "description": "A task.",
            "avatarId": self.default_avatar_id("issuetype"),
        }
        self.priorities[seed.priority_id] = {
            "id": seed.priority_id,
            "name": "Medium",
            "avatarId": self.default_avatar_id("priority"),
        }
        for kind, entity_id in seed.awork.items():
            self.awork_entities[kind].add(entity_id)

    def next_id(self) -> str:
        return str(next(self.ids))

    def record_upload(self, blob: Blob, service: str, route: str, credential: str | None) -> None:
        self.uploads.append(
            {
                "time": time.time(),
                "sha256": blob.sha256,
                "size": blob.size,
                "service": service,
                "route": route,
                "filename": blob.filename,
                "content_type": blob.content_type,
                "credential": credential,
            }
        )
