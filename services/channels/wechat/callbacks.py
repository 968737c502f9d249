"""What WeChat Official Account and WeCom callbacks share: query-string signatures, the XML body, safe-mode
decryption, the ``success`` answer and the documented errors."""

from collections.abc import Mapping

from fastapi import Request
from fastapi.responses import PlainTextResponse

from services.channels.common.http import decode_utf8, read_body, require_media_type
from services.channels.common.runtime import Channels
from services.channels.exceptions import BadSignature, InvalidPayload
from services.channels.wechat.crypto import WechatCrypto
from services.channels.wechat.xml import parse_xml

XML_TYPES = ("text/xml", "application/xml")

ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "not UTF-8, not XML, a DOCTYPE/entity (XXE), or an undecryptable Encrypt"},
    401: {"description": "signature missing or wrong, timestamp stale, or encrypted for another appid/corp id"},
    404: {"description": "unknown account"},
    413: {"description": "body too large"},
    415: {"description": "not text/xml or application/xml"},
    422: {"description": "XML that is not a WeChat message"},
    503: {"description": "the broker (or, for WeCom, the WeCom API or cursor store) is unavailable; retried"},
}


def query(request: Request, *names: str) -> list[str]:
    """The named query parameters, or a 401 naming those missing (WeChat signs through the query string)."""
    params = request.query_params
    missing = [name for name in names if not params.get(name)]
    if missing:
        raise BadSignature(f"missing query parameter(s): {', '.join(missing)}")
    return [params[name] for name in names]


def success() -> PlainTextResponse:
    """WeChat's documented "received, no reply" answer."""
    return PlainTextResponse("success")


async def xml_fields(request: Request, channels: Channels) -> dict[str, str]:
    """The callback's XML elements: an XML media type, a bounded UTF-8 body."""
    require_media_type(request, *XML_TYPES)
    return parse_xml(decode_utf8(await read_body(request, channels.settings.max_body_bytes)))


def decrypt(
    crypto: WechatCrypto, envelope: Mapping[str, str], msg_signature: str, timestamp: str, nonce: str
) -> dict[str, str]:
    """The message inside a safe-mode envelope's ``<Encrypt>``, its ``msg_signature`` checked first."""
    encrypted = envelope.get("Encrypt", "").strip()
    if not encrypted:
        raise InvalidPayload("<Encrypt> is missing or empty")
    crypto.verify(msg_signature, timestamp, nonce, encrypted)
    return parse_xml(crypto.decrypt(encrypted))
