"""Phone: lines whose calls arrive as Twilio Voice webhooks."""

from pydantic import BaseModel, ConfigDict, Field

from services.channels.domain.common import ACCOUNT_ID


class PhoneLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=128, pattern=ACCOUNT_ID)
    name: str
