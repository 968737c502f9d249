"""A Douyin open platform app as the configuration file describes it: its id in the webhook URL, the client_key its
webhooks name and the client_secret that signs them."""

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from services.channels.common.ids import ACCOUNT_ID


class DouyinApp(BaseModel):
    """A Douyin open platform app (移动/网站应用 or 小程序) whose webhooks post to kefu."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=128, pattern=ACCOUNT_ID, description="the app id in the webhook URL")
    name: str
    client_key: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^\S+$",
        description="The app's client_key (ClientKey / AppID); a webhook naming another one is refused.",
    )
    client_secret: SecretStr = Field(
        min_length=1, description="The app's client_secret: X-Douyin-Signature is SHA-1 of it plus the body."
    )
