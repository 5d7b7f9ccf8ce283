"""Request bodies, validated at the edge: a wrong type or an unknown field is a 400 before
any work. Paths themselves are validated by the producer, as for every other caller."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cdn_refresh.callbacks import MAX_URL_CHARS


class RefreshRequest(BaseModel):
    """``POST /v1/refresh``: paths to refresh as one job."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(min_length=1, description="URLs (file) or directories ending in /")
    type: Literal["file", "directory"] = "file"
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
