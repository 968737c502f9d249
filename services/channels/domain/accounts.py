"""The ``channels`` section of the configuration file: one entry per platform account."""

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebchatSite(_Strict):
    """A web chat site whose widget backend posts Standard Webhooks."""

    site_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    name: str
    secrets: list[SecretStr] = Field(
        min_length=1, description="Signing secrets (whsec_…); several during a rotation, any may sign."
    )


class ChannelsConfig(_Strict):
    webchat: list[WebchatSite] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        ids = [site.site_id for site in self.webchat]
        if len(set(ids)) != len(ids):
            raise ValueError("webchat site ids must be unique")
        return self
