"""WeChat Official Accounts and WeCom customer service (微信客服)."""

from pydantic import BaseModel, ConfigDict, Field

from services.channels.domain.common import ACCOUNT_ID


class WechatAccount(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=128, pattern=ACCOUNT_ID)
    name: str


class WecomKfAccount(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=128, pattern=ACCOUNT_ID)
    name: str
