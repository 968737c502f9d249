"""A web chat site as the configuration file describes it: its id in the webhook URL and its signing secrets."""

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from services.channels.common.ids import ACCOUNT_ID


class WebchatSite(BaseModel):
    """A web chat site whose widget backend posts Standard Webhooks."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=128, pattern=ACCOUNT_ID, description="the site id in the webhook URL")
    name: str
    secrets: list[SecretStr] = Field(
        min_length=1, description="Signing secrets (whsec_…); several during a rotation, any may sign."
    )
