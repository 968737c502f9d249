"""The canonical form of a customer's identity on each channel: what ``Customer.platform_id`` holds.

The channel adapters build the platform id of every contact event with these functions, and the
router canonicalizes identities linked by hand with the same ones, so a caller and a manual link of
their number name one customer.

* phone: a number in E.164 (``+8613800138000``), national numbers read in a default region (CN);
  Twilio Client and SIP callers as ``client:<identity>`` and ``sip:<user>@<host>`` (scheme and host
  lower-cased, URI parameters dropped); a withheld caller as ``anonymous:<CallSid>``.
* email: the address as ``email-validator`` normalizes it (no DNS lookups), then lower-cased as a
  whole: mail systems treat ``Zhang.Wei@`` and ``zhang.wei@`` as one mailbox, and the adapters have
  always kept addresses lower-cased.
* wechat (OpenID, UnionID, WeCom external_userid) and douyin (open_id, union_id): 6 to 64 letters,
  digits, ``_`` or ``-``. Real ids are 28 (OpenID, UnionID) to 36 (Douyin) characters; the range is
  wide on purpose, so that no real id is refused.
* webchat: the site's visitor id as it is, if PostgreSQL can store it.

Every function raises ``InvalidIdentity`` (a ``ValueError``) saying why a value is not an identity.
"""

import functools
import re
from typing import Final

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from contracts.types import Channel

MAX_LENGTH: Final = 256
"""The longest platform id a contact event carries (``Customer.platform_id``)."""

DEFAULT_PHONE_REGION: Final = "CN"
"""The region national numbers (``13800138000``) are read in when nothing more precise is known."""

_PLATFORM_USER = re.compile(r"[A-Za-z0-9_-]{6,64}")
_CALL_ID = re.compile(r"[A-Za-z0-9]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PLATFORM_USER_NAMES = {
    Channel.WECHAT: "a WeChat id (OpenID, UnionID or WeCom external_userid)",
    Channel.DOUYIN: "a Douyin id (open_id or union_id)",
}


class InvalidIdentity(ValueError):
    """A value that is not an identity on its channel; the message says why."""


def canonical(channel: Channel, raw: str, *, phone_region: str | None = DEFAULT_PHONE_REGION) -> str:
    """``raw`` as the identity on ``channel`` that contact events carry; raises ``InvalidIdentity``."""
    if channel is Channel.PHONE:
        return phone(raw, phone_region)
    if channel is Channel.EMAIL:
        return email(raw)
    if channel in _PLATFORM_USER_NAMES:
        return platform_user(channel, raw)
    return webchat_visitor(raw)


def phone(raw: str, region: str | None = DEFAULT_PHONE_REGION) -> str:
    """A caller's identity: E.164 for a number, else a ``client:``, ``sip:`` or ``anonymous:`` identity."""
    value = raw.strip()
    scheme, colon, rest = value.partition(":")
    scheme = scheme.lower()
    if colon and scheme == "client":
        return _bounded(f"client:{_printable(rest, 'a Twilio Client identity')}")
    if colon and scheme in ("sip", "sips"):
        return _sip(scheme, rest)
    if colon and scheme == "anonymous":
        if not _CALL_ID.fullmatch(rest):
            raise InvalidIdentity("an anonymous caller is anonymous:<call id> (letters and digits)")
        return f"anonymous:{rest}"
    return phone_number(value, region)


def phone_number(raw: str, region: str | None = DEFAULT_PHONE_REGION) -> str:
    """``raw`` as an E.164 number; national numbers are read in ``region``."""
    e164 = _e164(raw.strip()[:MAX_LENGTH], region)
    if e164 is None:
        where = f" (national numbers are read as {region})" if region else ""
        raise InvalidIdentity(f"not a phone number: give one in E.164 such as +8613800138000{where}")
    return e164


def phone_region(value: str) -> str:
    """A region national numbers can be read in: an ISO 3166 code phonenumbers knows, upper-cased."""
    if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidIdentity(f"{value!r} is not a region phonenumbers knows (e.g. CN, US)")
    return value.upper()


def email(raw: str) -> str:
    """An e-mail address, validated without DNS lookups and normalized: IDNA domain, whole address lower-cased."""
    try:
        address = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidIdentity(f"not an e-mail address: {exc}") from None
    return _bounded(address.normalized.lower())


def platform_user(channel: Channel, raw: str) -> str:
    """A WeChat or Douyin user id, checked for shape."""
    value = raw.strip()
    if not _PLATFORM_USER.fullmatch(value):
        name = _PLATFORM_USER_NAMES.get(channel, f"a {channel} id")
        raise InvalidIdentity(f"not {name}: it is 6 to 64 letters, digits, '_' or '-'")
    return value


def webchat_visitor(raw: str) -> str:
    """A web chat visitor id: the site's own, kept as it is."""
    if not raw.strip():
        raise InvalidIdentity("a web chat visitor id must not be blank")
    return _bounded(_printable(raw, "a web chat visitor id"))


@functools.lru_cache(maxsize=65536)
def _e164(raw: str, region: str | None) -> str | None:
    # cached: parsing costs ~17 µs, and a call's webhooks normalize the same few numbers again and again
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _sip(scheme: str, rest: str) -> str:
    address = rest.split(";", 1)[0].strip()  # transport and other URI parameters are not the caller
    user, at, host = address.rpartition("@")
    if not host or (at and not user) or any(c.isspace() for c in address):
        raise InvalidIdentity("a SIP caller is sip:<user>@<host>")
    _printable(address, "a SIP address")
    return _bounded(f"{scheme}:{user}{at}{host.lower()}")


def _printable(value: str, what: str) -> str:
    if not value:
        raise InvalidIdentity(f"{what} must not be empty")
    if _CONTROL.search(value):
        raise InvalidIdentity(f"{what} must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidIdentity(f"{what} must be valid Unicode (it has an unpaired surrogate)") from None
    return value


def _bounded(value: str) -> str:
    if len(value) > MAX_LENGTH:
        raise InvalidIdentity(f"longer than {MAX_LENGTH} characters")
    return value
