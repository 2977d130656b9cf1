"""One short function per declared step (``producers.kinds``), registered under the step's name.

A step gets a ``StepContext`` (the job, earlier steps' outputs, its connection's clients) and
returns what it produced: ids and sizes, never tokens. It raises ``worker.errors`` only.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from PIL import Image, UnidentifiedImageError

from producers.config import FerryConfig
from producers.kinds import KINDS
from producers.params import (
    AworkImageParams,
    JiraAvatarDeleteParams,
    JiraAvatarParams,
    MarketplaceAssetDeleteParams,
    MarketplaceImageParams,
    Params,
)
from producers.records import FileInfo, JobRecord
from producers.store import JobStore
from worker.clients.assets import MediaCredentials, WantedAttachment, record_size, shown_bytes, size_could_be
from worker.clients.jira_avatars import Avatar
from worker.clients.marketplace import AssetKind
from worker.clients.marketplace import form_order as marketplace_form_order
from worker.clients.media import GONE, VerifiedUpload, form_order
from worker.errors import OutcomeUnknown, PermanentError
from worker.http import outcome_unknown
from worker.runtime import Clients, runtime
from worker.uploads import OpenFile, checked_uri, open_file

WORKSPACE_CACHE_SECONDS = 24 * 3600
# Assets attachment credentials: how long to trust a JWT whose expiry we cannot read. Shorter
# than the ~11 min seen in examples, because the real lifetime is UNCONFIRMED.
UNKNOWN_JWT_LIFETIME = 300.0
JWT_MARGIN = 15.0  # stop using a JWT this long before it expires: an upload takes time to start
AVATAR_NAMESPACE = uuid.UUID("8a3c3f5e-0f6d-4a4e-9a77-3c1f4c2f0b11")
# How long a connection's working upload form is trusted before "auto" probes again.
UPLOAD_FORM_SECONDS = 7 * 24 * 3600


@dataclass
class StepContext:
    job: JobRecord
    step: str
    attempt: int
    outputs: dict[str, dict[str, Any]]
    store: JobStore
    clients: Clients
    # The workspace id workspace() took from the cache, if it did: a 404 may mean it went stale.
    cached_workspace: str | None = None
    # This worker's ferry.toml: its own [files] rules decide which files and URLs a step may use.
    config: FerryConfig = field(default_factory=lambda: runtime().config)

    @property
    def params(self) -> dict[str, Any]:
        return self.job.params

    def open_file(self) -> AbstractContextManager[OpenFile]:
        """The job's file, checked by this worker's ``[files]`` rules and, right before it is
        sent, against what its kind accepts (``worker.uploads.as_sent``)."""
        return open_file(self.job.file, self.config, KINDS[self.job.kind].file)

    def workspace(self) -> str:
        """The job's Assets workspace: given, else discovered from the site once and cached."""
        if self.params.get("workspace"):
            return str(self.params["workspace"])
        for out in self.outputs.values():
            if out.get("workspace_id"):
                return str(out["workspace_id"])
        cached = self.store.cached_workspace(self._site())
        if cached:
            self.cached_workspace = cached
            return self.cached_workspace
        return self._discover_workspace()

    def rediscover_workspace(self) -> bool:
        """After a 404 in a step that used a cached workspace id: drop the id and ask the site
        again. True if the site now names another workspace (the 404 was the stale id, so the
        step is worth running again); False if the step used no cached id or it still holds."""
        stale, self.cached_workspace = self.cached_workspace, None
        if stale is None:
            return False
        self.store.forget_workspace(self._site())
        return self._discover_workspace() != stale

    def _discover_workspace(self) -> str:
        found = self.clients.assets.discover_workspace()
        self.store.cache_workspace(self._site(), found, WORKSPACE_CACHE_SECONDS)
        return found

    def _site(self) -> str:
        return self.clients.conn.site_url or ""


@dataclass(frozen=True)
class FormMemo:
    """The upload form that last worked on the job's connection for one kind of asset
    (``keys.upload_form``): a cache, not a secret, expiring so a service that moves is probed again."""

    ctx: StepContext
    asset: str

    def get(self) -> str | None:
        return self.ctx.store.upload_form(self.ctx.job.connection, self.asset)

    def remember(self, form: str) -> None:
        self.ctx.store.remember_upload_form(self.ctx.job.connection, self.asset, form, UPLOAD_FORM_SECONDS)

    def forget(self) -> None:
        self.ctx.store.forget_upload_form(self.ctx.job.connection, self.asset)


StepFn = Callable[[StepContext], dict[str, Any]]
STEPS: dict[str, StepFn] = {}


def step(name: str) -> Callable[[StepFn], StepFn]:
    def register(fn: StepFn) -> StepFn:
        STEPS[name] = fn
        return fn
    return register


# ---- assets-avatar ---------------------------------------------------------------------------
@step("upload_avatar")
def upload_avatar(ctx: StepContext) -> dict[str, Any]:
    workspace = ctx.workspace()
    # Stable per job, so every retry of this step presents the same client UUID.
    client_uuid = str(uuid.uuid5(AVATAR_NAMESPACE, ctx.job.id))
    with ctx.open_file() as file:
        uploaded = ctx.clients.assets.upload_avatar(workspace, int(ctx.params["object_type"]), file,
                                                    client_uuid)
    return {"workspace_id": workspace, "client_uuid": client_uuid,
            "avatar_uuid": uploaded.avatar_uuid, "urls": uploaded.urls}


@step("set_object_avatar")
def set_object_avatar(ctx: StepContext) -> dict[str, Any]:
    workspace = ctx.workspace()
    avatar_uuid = ctx.outputs["upload_avatar"]["avatar_uuid"]
    object_type = int(ctx.params["object_type"])
    if ctx.params.get("object"):
        obj = ctx.clients.assets.update_object(workspace, str(ctx.params["object"]), object_type,
                                               avatar_uuid)
    else:
        obj = ctx.clients.assets.create_object(workspace, object_type, ctx.params["attributes"],
                                               avatar_uuid)
    return {"object_id": str(obj.get("id")), "object_key": obj.get("objectKey"),
            "avatar_uuid": avatar_uuid, "created": not ctx.params.get("object")}


# ---- assets-attachment -----------------------------------------------------------------------
@step("get_credentials")
def get_credentials(ctx: StepContext) -> dict[str, Any]:
    workspace = ctx.workspace()
    creds = _fresh_credentials(ctx, workspace, "get_credentials")
    return {"workspace_id": workspace, "client_id": creds.client_id,
            "media_base_url": creds.media_base_url, "expires_at": _jwt_expiry(creds.jwt)}


@step("media_upload")
def media_upload(ctx: StepContext) -> dict[str, Any]:
    workspace = ctx.workspace()
    creds, refreshed = _stored_credentials(ctx), False
    if creds is None:  # expired since the credentials step (or a replay much later): fetch anew
        creds, refreshed = _fresh_credentials(ctx, workspace, "get_credentials"), True
    try:
        uploaded = _upload(ctx, creds)
    except PermanentError as exc:
        if exc.status not in (401, 403) or refreshed:
            raise
        # The media service refused the JWT (expired or revoked): new credentials, once.
        creds, refreshed = _fresh_credentials(ctx, workspace, "get_credentials"), True
        uploaded = _upload(ctx, creds)
    return {"workspace_id": workspace, "media_id": uploaded.media.id, "size": uploaded.media.size,
            "size_verified": uploaded.verified, "credentials_refreshed": refreshed,
            "upload_form": uploaded.form, "upload_forms_tried": list(uploaded.tried)}


def _upload(ctx: StepContext, creds: MediaCredentials) -> VerifiedUpload:
    """Upload with the connection's form (``media_upload``; ``auto``: the one that worked last
    here, else binary), verified by the stored size; remember the form that worked."""
    memo = FormMemo(ctx, "media")
    remembered = memo.get()
    forms = form_order(ctx.clients.conn.media_upload, remembered)
    try:
        uploaded = ctx.clients.media.upload_verified(creds, ctx.open_file, forms)
    except PermanentError as exc:
        if exc.status in GONE and remembered is not None:
            memo.forget()  # the form we remembered is gone, and so is the other
        raise
    if len(forms) > 1 and uploaded.form != remembered:
        memo.remember(uploaded.form)  # unverified: forgotten again if the link step finds it wrong
    return uploaded


@step("link_attachment")
def link_attachment(ctx: StepContext) -> dict[str, Any]:
    workspace = ctx.workspace()
    object_id = str(ctx.params["object"])
    upload = ctx.outputs["media_upload"]
    file = ctx.job.file
    assert file is not None
    since, repeat = _first_attempt(ctx)
    verified = bool(upload.get("size_verified", True))
    wanted = WantedAttachment(media_id=upload["media_id"], filename=file.name, size=int(upload["size"]),
                              comment=str(ctx.params.get("comment", "")), since=since, size_known=verified)
    existing = None
    if repeat:  # an earlier attempt (or run) may have linked it before its answer was lost
        existing = wanted.find(_attachments(ctx, workspace, object_id, must=True))
    try:
        bean = existing if existing is not None else _link(ctx, workspace, object_id, wanted, file.mime_type)
    except PermanentError:
        if not verified:  # refused a file of unknown size: probe the forms afresh next time
            _forget_media_form(ctx, str(upload.get("upload_form")))
        raise
    if not verified:
        _check_linked_size(ctx, bean, object_id, wanted, str(upload.get("upload_form")))
    return _attachment_result(bean, object_id, wanted.media_id, reused=existing is not None)


def _link(ctx: StepContext, workspace: str, object_id: str, wanted: WantedAttachment,
          mime_type: str | None) -> dict[str, Any]:
    """Link the media file; its attachment record from the answer, else (an empty 2xx answer:
    linked) from the object's list, else empty."""
    linked = ctx.clients.assets.link_attachment(
        workspace, object_id, media_id=wanted.media_id, filename=wanted.filename,
        content_type=mime_type or "application/octet-stream", size=wanted.size, comment=wanted.comment)
    bean = wanted.find(linked) or (linked[0] if linked else None)
    if bean is None:
        bean = wanted.find(_attachments(ctx, workspace, object_id, must=False)) or {}
    return bean


def _check_linked_size(ctx: StepContext, bean: dict[str, Any], object_id: str, wanted: WantedAttachment,
                       form: str) -> None:
    """The media service would not say how much it stored: the attachment record must show the
    file's size (1024- or 1000-based). Anything else fails for good, naming the attachment for a
    human to remove; a second upload could not tell either. The form that made it is forgotten."""
    shown = record_size(bean)
    if shown is not None and size_could_be(shown, wanted.size):
        return
    _forget_media_form(ctx, form)
    where = f"attachment {bean.get('id', '(id unknown)')} on object {object_id}"
    if shown is None:
        # UNCONFIRMED whether a cloud record always shows a size; unverified is never a success.
        raise PermanentError(f"the media service would not say how many bytes it stored and {where} "
                             "shows no size: check it, and remove it if it is not the whole file")
    raise PermanentError(f"media service stored {shown_bytes(shown)} of {wanted.size} bytes "
                         f"({form} upload, size unknown until linked): remove {where}")


def _forget_media_form(ctx: StepContext, form: str) -> None:
    memo = FormMemo(ctx, "media")
    if memo.get() == form:
        memo.forget()


def _first_attempt(ctx: StepContext) -> tuple[float, bool]:
    """When this step first ran for this job (across retries, redeliveries and replays: the
    memo outlives a replay's reset of the step record), and whether this run is a repeat."""
    now = time.time()
    if ctx.store.keep_step_memo(ctx.job.id, ctx.step, f"{now:.3f}"):
        recorded = ctx.job.step(ctx.step).started_at  # the memo may have expired; the record knows
        first = datetime.fromisoformat(recorded).timestamp() if recorded else now
        return min(first, now), ctx.attempt > 1
    return float(ctx.store.step_memo(ctx.job.id, ctx.step) or now), True


def _attachments(ctx: StepContext, workspace: str, object_id: str, *, must: bool) -> list[dict[str, Any]]:
    """The object's attachment records. ``must``: we are about to repeat a link, and without the
    list we cannot tell whether the earlier one landed, so a human checks (never a duplicate)."""
    try:
        return ctx.clients.assets.list_attachments(workspace, object_id)
    except PermanentError as exc:
        if not must:
            return []
        raise outcome_unknown(
            f"an earlier link attempt lost its answer and the object's attachments cannot be listed "
            f"({exc.message})", f"the attachments of object {object_id}", exc.status) from None


def _attachment_result(bean: dict[str, Any], object_id: str, media_id: str,
                       reused: bool = False) -> dict[str, Any]:
    return {"attachment_id": str(bean.get("id")) if bean.get("id") is not None else None,
            "object_id": object_id, "media_id": media_id, "already_linked": reused}


# ---- short-lived media credentials -----------------------------------------------------------
def _fresh_credentials(ctx: StepContext, workspace: str, producer: str) -> MediaCredentials:
    creds = ctx.clients.assets.get_attachment_credentials(workspace, str(ctx.params["object"]))
    ttl = _jwt_seconds_left(creds.jwt) - JWT_MARGIN
    ctx.store.put_secret(ctx.job.id, producer, {"jwt": creds.jwt, "client_id": creds.client_id,
                                                "media_base_url": creds.media_base_url}, ttl)
    return creds


def _stored_credentials(ctx: StepContext) -> MediaCredentials | None:
    secret = ctx.store.get_secret(ctx.job.id, "get_credentials")
    if not secret:
        return None
    return MediaCredentials(secret["client_id"], secret["media_base_url"], secret["jwt"])


def _jwt_claims(token: str) -> dict[str, Any]:
    try:
        payload = token.split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    except (IndexError, ValueError):
        return {}


def _jwt_seconds_left(token: str) -> float:
    exp = _jwt_claims(token).get("exp")
    if isinstance(exp, int | float):
        return float(exp) - time.time()
    return UNKNOWN_JWT_LIFETIME


def _jwt_expiry(token: str) -> int | None:
    exp = _jwt_claims(token).get("exp")
    return int(exp) if isinstance(exp, int | float) else None


# ---- shared by the kinds below ---------------------------------------------------------------
P = TypeVar("P", bound=Params)


def typed(ctx: StepContext, model: type[P]) -> P:
    """The job's parameters as its kind's model (they were validated at submit)."""
    return model.model_validate(ctx.params)


def delete_once(ctx: StepContext, delete: Callable[[], None]) -> bool:
    """Run an idempotent DELETE. On a retry, 404 means our earlier attempt already deleted it
    (its answer was lost): report ``already_gone`` instead of failing. Returns already_gone."""
    try:
        delete()
    except PermanentError as exc:
        if exc.status == 404 and ctx.attempt > 1:
            return True
        raise
    return False


# ---- jira-avatar, jira-avatar-delete ---------------------------------------------------------
@step("load_avatar")
def load_avatar(ctx: StepContext) -> dict[str, Any]:
    params = typed(ctx, JiraAvatarParams)
    with ctx.open_file() as file:
        crop = params.crop(*_pixel_size(ctx.job.file, file))
        avatar = _earlier_avatar(ctx, params)
        adopted = avatar is not None
        if avatar is None:
            avatar = ctx.clients.jira_avatars.load_avatar(
                params.type, params.owner, file, crop.x, crop.y, crop.size)
    owner_id = ctx.clients.jira_avatars.owner_id(params.type, params.owner)
    return {"avatar_id": avatar.id, "type": params.type, "owner": params.owner, "owner_id": owner_id,
            "crop": crop._asdict(), "urls": avatar.urls, "adopted": adopted}


def _pixel_size(info: FileInfo | None, file: OpenFile) -> tuple[int, int]:
    """Width and height: from submit time's sniffing, else from the image header (a JPEG whose
    size marker sits past the sniffed head). Pillow reads the header only, not the pixels."""
    if info is not None and info.width and info.height:
        return info.width, info.height
    try:
        with Image.open(file.stream) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise PermanentError(f"cannot read the image's size: {exc}") from None
    finally:
        file.stream.seek(0)
    return int(width), int(height)


def _earlier_avatar(ctx: StepContext, params: JiraAvatarParams) -> Avatar | None:
    """Loading an avatar is not idempotent and its answer can be lost (or be a 5xx after the
    avatar was stored), and a retry must not leave a second visible avatar. Chosen over
    ``repeatable=False`` (which turns every lost answer into OutcomeUnknown for a human): before
    the first attempt we keep the owner's custom avatar ids in Redis (``keys.step_memo``, not
    the job record: a step cannot store partial output); every later attempt (retry,
    redelivery, replay) lists them again and adopts the one avatar that appeared since. Two or
    more new ones mean someone else is loading avatars onto the same owner: we cannot tell
    which is ours, so a human decides (OutcomeUnknown). Known limit: if ours never landed and
    exactly one foreign avatar appeared meanwhile, we adopt that one."""
    custom = ctx.clients.jira_avatars.list_avatars(params.type, params.owner).custom
    seen = ctx.store.step_memo(ctx.job.id, ctx.step)
    if seen is None:
        ctx.store.keep_step_memo(ctx.job.id, ctx.step, json.dumps([a.id for a in custom]))
        return None
    before = set(json.loads(seen))
    new = [a for a in custom if a.id not in before]
    if len(new) > 1:
        raise OutcomeUnknown(
            f"{len(new)} custom avatars appeared on {params.type} {params.owner} since the first "
            f"attempt ({', '.join(a.id for a in new)}); cannot tell which one is this job's")
    return new[0] if new else None


@step("set_current_avatar")
def set_current_avatar(ctx: StepContext) -> dict[str, Any]:
    params = typed(ctx, JiraAvatarParams)
    if not params.set_current:
        return {"set_current": False}
    avatar_id = str(ctx.outputs["load_avatar"]["avatar_id"])
    ctx.clients.jira_avatars.set_current(params.type, params.owner, avatar_id)
    return {"set_current": True, "current_avatar_id": avatar_id}


@step("delete_avatar")
def delete_avatar(ctx: StepContext) -> dict[str, Any]:
    params = typed(ctx, JiraAvatarDeleteParams)
    gone = delete_once(ctx, lambda: ctx.clients.jira_avatars.delete_avatar(
        params.type, params.owner, params.avatar))
    return {"deleted_avatar_id": params.avatar, "type": params.type, "owner": params.owner,
            "already_gone": gone}


# ---- marketplace-artifact, marketplace-image, marketplace-asset-delete ------------------------
@step("upload_artifact")
def upload_artifact(ctx: StepContext) -> dict[str, Any]:
    info = ctx.job.file
    if info is not None and info.uri:
        # Marketplace fetches the URL itself: the bytes never pass through this worker, but the
        # worker's own URL rules still decide whether it hands the URL over.
        asset = ctx.clients.marketplace.fetch_artifact(checked_uri(info.uri, ctx.config))
        return {**asset.to_json(), "fetched_from": info.uri}
    return {**_upload_asset(ctx, "artifact"), "fetched_from": None}


@step("upload_image")
def upload_image(ctx: StepContext) -> dict[str, Any]:
    params = typed(ctx, MarketplaceImageParams)
    return {**_upload_asset(ctx, "image", params.image_type), "image_type": params.image_type}


def _upload_asset(ctx: StepContext, kind: AssetKind, image_type: str = "") -> dict[str, Any]:
    """Upload in the form this connection last took for the kind (else the kind's first), the
    next on a 415; remember the form that was taken."""
    memo = FormMemo(ctx, f"marketplace-{kind}")
    remembered = memo.get()
    uploaded = ctx.clients.marketplace.upload(kind, ctx.open_file,
                                              marketplace_form_order(kind, remembered), image_type)
    if uploaded.form != remembered:
        memo.remember(uploaded.form)
    return {**uploaded.asset.to_json(), "upload_form": uploaded.form, "upload_forms_tried": list(uploaded.tried)}


@step("delete_asset")
def delete_asset(ctx: StepContext) -> dict[str, Any]:
    params = typed(ctx, MarketplaceAssetDeleteParams)
    gone = delete_once(ctx, lambda: ctx.clients.marketplace.delete_asset(params.asset))
    return {"deleted_asset": params.asset, "already_gone": gone}


# ---- awork-image, awork-image-delete ---------------------------------------------------------
@step("upload_profile_image")
def upload_profile_image(ctx: StepContext) -> dict[str, Any]:
    params = typed(ctx, AworkImageParams)
    with ctx.open_file() as file:
        image = ctx.clients.awork.upload_image(params.entity, params.id, file)
    return {"entity": params.entity, "id": params.id, **image.to_json()}


@step("delete_profile_image")
def delete_profile_image(ctx: StepContext) -> dict[str, Any]:
    params = typed(ctx, AworkImageParams)
    gone = delete_once(ctx, lambda: ctx.clients.awork.delete_image(params.entity, params.id))
    return {"entity": params.entity, "id": params.id, "deleted": True, "already_gone": gone}

