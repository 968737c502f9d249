"""Every platform the channels service serves, in the order its routes are documented: the one list that wires a
platform in (its accounts, its state, its routes). Each implements ``services.channels.common.runtime.Platform``."""

from typing import Any

from services.channels.common.runtime import Platform
from services.channels.douyin.routes import DOUYIN
from services.channels.email.routes import EMAIL
from services.channels.phone.routes import PHONE
from services.channels.webchat.routes import WEBCHAT
from services.channels.wechat.kf import WECOM_KF
from services.channels.wechat.official import OFFICIAL_ACCOUNTS

PLATFORMS: tuple[Platform[Any, Any], ...] = (WEBCHAT, OFFICIAL_ACCOUNTS, WECOM_KF, DOUYIN, EMAIL, PHONE)
