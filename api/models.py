"""Request bodies, validated at the edge: a wrong type or an unknown field is a 400 before
any work. Paths themselves are validated by the producer, as for every other caller."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cdn_refresh.callbacks import MAX_URL_CHARS
from cdn_refresh.operations import OPERATIONS

#: Every operation's label, as ``"type"`` takes it (the operations table's rows).
TYPE_LABELS = tuple(op.label for op in OPERATIONS.values())


class RefreshRequest(BaseModel):
    """``POST /v1/refresh``: paths to refresh as one job."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(
        min_length=1,
        description="URLs (file, ignore-params), directories ending in / (directory), or a "
        "host and a regular expression (regex)",
    )
    type: str = Field(default="file", json_schema_extra={"enum": list(TYPE_LABELS)})
    priority: Literal["interactive", "bulk"] = Field(
        default="interactive", description="bulk work leaves the interactive reserve alone"
    )
    skip_invalid: bool = Field(
        default=False, description="enqueue the valid paths and list the others"
    )
    callback_url: str | None = Field(
        default=None,
        max_length=MAX_URL_CHARS,
        description="POSTed once, signed, when the job ends (host in WEBHOOK_ALLOWED_HOSTS)",
    )
    callback_secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=256,
        description="sign this callback with this secret instead of CDN_REFRESH_WEBHOOK_SECRET "
        "(so that a receiver holds no key to another's deliveries); never shown again",
    )

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in TYPE_LABELS:
            raise ValueError(f"type must be one of {', '.join(TYPE_LABELS)}")
        return value

    def canonical_json(self) -> bytes:
        """The request as the Idempotency-Key fingerprints it: the parsed body, not its bytes
        (other spacing is the same request). A field added since keys were first kept is left
        out while unset, so that a key kept by an older release still matches the same body."""
        unset_new = {"callback_secret"} if self.callback_secret is None else set()
        return self.model_dump_json(exclude=unset_new).encode("utf-8")


class RejectedPath(BaseModel):
    """One input path refused: its 1-based line, the path as shown, and why."""

    line: int
    path: str
    reason: str


class RefreshReceipt(BaseModel):
    """202 of ``POST /v1/refresh``: the ``enqueue --json`` document; a retry with the same
    Idempotency-Key gets it again. A retry that went on from a first request that died
    part way says how many paths that one had put in (``resumed_after``); ``accepted`` and
    ``duplicates`` count what the retry put in. A retry whose first request had put every
    path in but died before answering gets the job's counts, and its rejections only as
    ``rejected_count``."""

    job_id: str
    accepted: int
    duplicates: int
    rejected: list[RejectedPath]
    incomplete: bool | None = Field(default=None, description="only when the enqueue failed")
    error: str | None = None
    backlog_days: float | None = Field(default=None, description="only with a warning")
    warning: str | None = None
    resumed_after: int | None = Field(
        default=None, description="only on a retry that went on from a request that died"
    )
    rejected_count: int | None = Field(
        default=None, description="only on a receipt rebuilt from the job (see above)"
    )


class ErrorDetail(BaseModel):
    """Where a request is off the schema (never the input itself)."""

    loc: list[str]
    msg: str


class ErrorDocument(BaseModel):
    """Every error answer: a stable ``error`` code and a ``message``; ``invalid_request``
    adds ``details``; ``rejected`` and ``enqueue_interrupted`` add the receipt's fields;
    ``idempotency_conflict`` adds the ``job_id`` being made, when there is one."""

    model_config = ConfigDict(extra="allow")

    error: str
    message: str
    details: list[ErrorDetail] | None = None
    job_id: str | None = None
