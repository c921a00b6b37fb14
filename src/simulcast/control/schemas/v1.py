"""Request and response shapes of the v1 dialect (V1.md).

Element settings and overrides are taken as raw JSON objects and checked by
:mod:`simulcast.control.services.configurations`, so an error names the element and the field
(``outputstream-1.settings.format``) instead of a position in a generic schema.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

InstanceStatus = Literal["QUEUED", "RUNNING", "STOPPED", "PREVIEW"]
RequestStatus = Literal["QUEUED", "RUNNING", "CANCELLED", "FAILED"]
OutputsState = Literal["LIVE", "OFFLINE"]


class V1DestinationIn(BaseModel):
    """``POST /api/v1/destinations``: an RTMP/RTMPS URL, the stream key in ``url`` or ``key``."""

    name: str = Field(min_length=1, max_length=200)
    url: str = Field(min_length=1, max_length=2048)
    key: str | None = Field(default=None, max_length=1024)


class V1DestinationOut(BaseModel):
    """A saved destination: the URL masked past the app path, the key never shown."""

    id: str
    name: str
    platform: str
    url: str


class V1DestinationList(BaseModel):
    """``GET /api/v1/destinations``."""

    destinations: list[V1DestinationOut]


class FileOut(BaseModel):
    """An uploaded file and what probing found."""

    id: str
    name: str
    kind: Literal["mp4", "png"]
    sizeBytes: int
    createdAt: int = Field(description="Unix milliseconds")
    container: str
    videoCodec: str
    audioCodec: str | None
    width: int
    height: int
    durationSeconds: float | None


class FileList(BaseModel):
    """``GET /api/v1/files``, with the account's quota."""

    files: list[FileOut]
    usedBytes: int
    quotaBytes: int


class ElementOut(BaseModel):
    """One element of a configuration."""

    id: str = Field(description="``<type>-<n>``, e.g. ``inputstream-1``")
    type: str
    title: str = ""
    settings: dict[str, Any] = Field(default_factory=dict)
    inputs: list[str] = Field(default_factory=list)


class ConfigurationIn(BaseModel):
    """A configuration body: ``name`` and ``elements``, or ``template`` (and ``name``)."""

    model_config = ConfigDict(extra="ignore")
    name: str | None = Field(default=None, max_length=200)
    elements: list[Any] | None = Field(
        default=None, description="``[{id, type, title, settings, inputs}]``"
    )
    template: str | None = Field(default=None, description="A name from GET /api/v1/templates")


class ConfigurationOut(BaseModel):
    """A stored configuration."""

    id: str
    name: str
    createdAt: int = Field(description="Unix milliseconds")
    updatedAt: int = Field(description="Unix milliseconds")
    elements: list[ElementOut]


class ConfigurationList(BaseModel):
    """``GET /api/v1/configurations``."""

    configurations: list[ConfigurationOut]


class TemplateOut(BaseModel):
    """A ready-made configuration to copy with ``POST /api/v1/configurations {"template"}``."""

    name: str
    description: str
    elements: list[ElementOut]


class TemplateList(BaseModel):
    """``GET /api/v1/templates``."""

    templates: list[TemplateOut]


class InstanceSettingsIn(BaseModel):
    """One instance of a launch: its name and per-element setting overrides."""

    model_config = ConfigDict(extra="ignore")
    name: str | None = Field(default=None, max_length=200)
    overrides: dict[str, Any] | None = Field(
        default=None, description='``{"outputstream-1": {"destinations": ["id"]}}``'
    )


class LaunchIn(BaseModel):
    """``POST /api/v1/configurations/{id}/instances`` (optional body; unknown fields ignored)."""

    model_config = ConfigDict(extra="ignore")
    numberOfInstances: int | None = Field(default=None, ge=1, le=100)
    instanceSettings: list[InstanceSettingsIn] | None = None
    restartOnFailure: bool = Field(
        default=False,
        description="An addition: when the node running an instance is lost, queue it again "
        "(keeping its input keys) instead of leaving it STOPPED with node_lost.",
    )


class InstanceRequestOut(BaseModel):
    """What a launch created; follow it until ``RUNNING``."""

    id: str
    configurationId: str
    status: RequestStatus
    instances: list[str]
    createdAt: int = Field(description="Unix milliseconds")
    error: str | None = None


class ElementStateOut(BaseModel):
    """One element's live figures (an input's ``streamkey`` and ``ingest`` URLs, ...)."""

    id: str
    type: str
    state: dict[str, Any]


class InstanceStateOut(BaseModel):
    """``state`` of an instance."""

    elements: list[ElementStateOut]


class InstanceOut(BaseModel):
    """One instance of a configuration."""

    id: str
    name: str
    configurationId: str
    requestId: str
    status: InstanceStatus
    outputs: OutputsState
    createdAt: int = Field(description="Unix milliseconds")
    startedAt: int | None = Field(description="Unix milliseconds of the first start")
    stoppedAt: int | None
    stopReason: str | None
    error: str | None = None
    overrides: dict[str, dict[str, Any]]
    state: InstanceStateOut


class InstanceList(BaseModel):
    """Instances, newest first."""

    instances: list[InstanceOut]


class OutputsIn(BaseModel):
    """``PUT /api/v1/configurations/{id}/instances``: every output of every running instance."""

    outputs: OutputsState


class UsageItem(BaseModel):
    """One instance's running time and cost so far."""

    instanceId: str
    configurationId: str
    name: str
    startedAt: int | None
    stoppedAt: int | None
    seconds: int
    costSats: int


class UsageOut(BaseModel):
    """``GET /api/v1/usage``: instances that ran, newest first."""

    usage: list[UsageItem]
