"""What the gateway says over HTTP, as pydantic models: the responses are built from them and
`/openapi.json` is generated from them, so the two cannot drift apart.

The seed's format (`/v3/...`) reuses the core's models (`ImageRequest`, `ImageResponse`: camelCase
on the wire); the OpenAI-compatible one (`/v1/...`) has OpenAI's field names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from layer_core.schema import MAX_COUNT, ImageResponse, ResponseFormat, _Wire

# --- the seed's format -----------------------------------------------------------------------


class GatewayImageResponse(ImageResponse):
    """`ImageResponse` on the wire: camelCase, with `latencyMs` beside `latency` (both ms)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def latency_ms(self) -> float:
        """The same milliseconds as `latency`, under the name the seed's newer clients read."""
        return self.latency


class ErrorBody(BaseModel):
    """Every `/v3` error: a stable code, a message saying what to do, and details (for a
    provider failure, every attempt)."""

    error: str = Field(description="a stable code, e.g. invalid_request, budget_exceeded")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class CandidateOut(_Wire):
    model: str
    provider: str
    price: str = Field(description="USD per image, exact")
    estimated_cost: str = Field(description="USD for the whole request, exact")
    warnings: list[str] = Field(default_factory=list)


class RejectionOut(_Wire):
    model: str
    reason: str


class ExplainResponse(_Wire):
    """The plan for a request: the models to try in order, and those left out and why."""

    gate_id: str
    size: str
    quality: str | None
    style: str | None
    count: int
    candidates: list[CandidateOut]
    rejected: list[RejectionOut]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


# --- OpenAI's format -------------------------------------------------------------------------

#: OpenAI's quality words onto layer's: its newer models' low/medium/high read as layer's
#: standard (low, medium) and hd (high); `auto` leaves it to the gate.
OPENAI_QUALITY: dict[str, str | None] = {
    "standard": "standard",
    "hd": "hd",
    "low": "standard",
    "medium": "standard",
    "high": "hd",
    "auto": None,
}


class OpenAIImageRequest(BaseModel):
    """`POST /v1/images/generations`, as OpenAI's SDKs send it. `model` names a gate, or
    `gate/model` for a model of it; parameters layer has no use for are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    prompt: str
    model: str | None = Field(None, description="a gate, or gate/model; unset: the default gate")
    n: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None = None
    size: str | None = Field(None, description="WxH, or auto")
    quality: Literal["standard", "hd", "low", "medium", "high", "auto"] | None = None
    style: Literal["vivid", "natural"] | None = None
    response_format: ResponseFormat | None = None
    user: str | None = Field(None, description="recorded in the ledger as metadata `user`")


class OpenAIImage(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class OpenAIImagesResponse(BaseModel):
    created: int
    data: list[OpenAIImage]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """OpenAI's error body, which its SDKs read into their exception classes."""

    error: OpenAIErrorDetail


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "layer"


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]
