"""The ``channels`` section of the configuration file: one list of accounts per channel.

Every account model has an ``id`` (the path parameter of its webhook); secrets are ``SecretStr``
so they never reach logs or reprs.
"""

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.channels.douyin.account import DouyinApp
from services.channels.email.inbox import EmailInbox
from services.channels.phone.account import PhoneLine
from services.channels.webchat.account import WebchatSite
from services.channels.wechat.accounts import WechatAccount, WecomKfAccount


class ChannelsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    webchat: list[WebchatSite] = Field(default_factory=list)
    wechat: list[WechatAccount] = Field(default_factory=list, description="WeChat Official Accounts")
    wecom_kf: list[WecomKfAccount] = Field(default_factory=list, description="WeCom customer service (微信客服)")
    douyin: list[DouyinApp] = Field(default_factory=list)
    email: list[EmailInbox] = Field(default_factory=list)
    phone: list[PhoneLine] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        for name in type(self).model_fields:
            ids = [account.id for account in getattr(self, name)]
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            if duplicates:
                raise ValueError(f"{name}: account ids must be unique, repeated: {duplicates}")
        shared = {a.id for a in self.wechat} & {a.id for a in self.wecom_kf}
        if shared:
            raise ValueError(f"wechat and wecom_kf share account ids {sorted(shared)} (both publish as channel wechat)")
        return self
