"""Routes and classification rules: which queue and priority a new contact gets."""

import re
from enum import StrEnum

from pydantic import Field, field_validator

from contracts import Channel
from kefu.config_schema import Strict
from services.router.domain.config.text import Text


class RouteConfig(Strict):
    channel: Channel
    account: str | None = Field(default=None, description="the channel account; any when absent")
    queue: str


class CustomerTier(StrEnum):
    STANDARD = "standard"
    VIP = "vip"
    KEY_ACCOUNT = "key_account"


class RuleMatch(Strict):
    """What a new contact must have for a rule to apply.

    Every condition given must hold, any value of a list will do; keywords and regex are one condition on the first
    message (either finding it is enough).
    """

    channels: list[Channel] = Field(default_factory=list)
    accounts: list[str] = Field(default_factory=list, description="channel account ids")
    keywords: list[str] = Field(default_factory=list, description="in the first message, case-insensitive")
    regex: str | None = Field(default=None, description="searched in the first message, case-insensitive")
    tiers: list[CustomerTier] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list, description="BCP 47 prefixes: zh matches zh-CN")

    @field_validator("regex")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise ValueError(f"the regex does not compile: {exc.msg} at position {exc.pos}") from None
        return pattern

    def matches(
        self, *, channel: Channel, account_id: str, text: str, tier: CustomerTier | None, language: str | None
    ) -> bool:
        """Whether a new contact with these properties satisfies every condition."""
        lang = (language or "").casefold()
        return (
            (not self.channels or channel in self.channels)
            and (not self.accounts or account_id in self.accounts)
            and self._text_matches(text)
            and (not self.tiers or tier in self.tiers)
            and (
                not self.languages
                or any(lang == p.casefold() or lang.startswith(p.casefold() + "-") for p in self.languages)
            )
        )

    def _text_matches(self, text: str) -> bool:
        # keywords and regex are two ways to write one condition on the text: either may find it
        if not self.keywords and self.regex is None:
            return True
        folded = text.casefold()
        return any(k.casefold() in folded for k in self.keywords) or (
            self.regex is not None and re.search(self.regex, text, re.IGNORECASE) is not None
        )


class RuleConfig(Strict):
    name: Text = Field(min_length=1, max_length=128, description="the category of the contacts it places")
    match: RuleMatch
    queue: str
    priority: int | None = Field(default=None, description="the contact's priority; the queue's when absent")
