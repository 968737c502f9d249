"""The accounts of the WeChat platform, from the configuration file: WeChat Official Accounts and WeCom customer
service (微信客服) corps. Their secrets are ``SecretStr`` and errors never quote them (``hide_input_in_errors``)."""

import base64
import binascii
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from services.channels.common.ids import ACCOUNT_ID


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key of a 43-character EncodingAESKey; ``ValueError`` (never quoting it) if not one."""
    if len(encoding_aes_key) != 43:
        raise ValueError("EncodingAESKey must be 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as exc:
        raise ValueError("EncodingAESKey is not base64") from exc
    if len(key) != 32:
        raise ValueError("EncodingAESKey must decode to 32 bytes")
    return key


def _check_aes_key(value: SecretStr | None) -> SecretStr | None:
    if value is not None:
        aes_key(value.get_secret_value())
    return value


class WechatAccount(BaseModel):
    """A WeChat Official Account (公众号) whose server URL is ``/webhooks/wechat/{id}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
    id: str = Field(min_length=1, max_length=128, pattern=ACCOUNT_ID, description="the account id in the webhook URL")
    name: str
    appid: str = Field(min_length=1, max_length=64, description="The account's AppID (wx…).")
    token: SecretStr = Field(description="The Token set in 基本配置 / 服务器配置 (3-32 letters or digits).")
    encoding_aes_key: SecretStr | None = Field(
        default=None, description="The 43-character EncodingAESKey; needed for safe (encrypted) mode."
    )
    require_encryption: bool = Field(
        default=False, description="Refuse plain-mode messages: accept only safe mode (encrypt_type=aes)."
    )
    contact_menu_keys: frozenset[str] = Field(
        default=frozenset(), description="Custom-menu CLICK EventKeys that open a contact (e.g. CONTACT_AGENT)."
    )

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if not 3 <= len(secret) <= 32 or not secret.isascii() or not secret.isalnum():
            raise ValueError("token must be 3-32 letters or digits")
        return value

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes_key_shape(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_aes_key(value)

    @model_validator(mode="after")
    def _encryption_needs_key(self) -> Self:
        if self.require_encryption and self.encoding_aes_key is None:
            raise ValueError("require_encryption needs encoding_aes_key")
        return self


class WecomKfAccount(BaseModel):
    """A WeCom customer service (微信客服) callback at ``/webhooks/wecom-kf/{id}``: every 客服账号 of the corp."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)
    id: str = Field(min_length=1, max_length=128, pattern=ACCOUNT_ID, description="the account id in the webhook URL")
    name: str
    corp_id: str = Field(min_length=1, max_length=64, description="The corp id (ww… / wx…): the receive id.")
    secret: SecretStr = Field(description="The 微信客服 Secret, for gettoken.")
    token: SecretStr = Field(description="The callback Token.")
    encoding_aes_key: SecretStr = Field(description="The callback's 43-character EncodingAESKey.")
    api_base: str = Field(
        default="https://qyapi.weixin.qq.com", pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$", description="WeCom API."
    )

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes_key_shape(cls, value: SecretStr) -> SecretStr:
        _check_aes_key(value)
        return value

    @field_validator("api_base")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")
