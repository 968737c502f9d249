"""Text PostgreSQL can store, for every string a contract carries.

PostgreSQL refuses NUL in ``text`` and ``jsonb`` (SQLSTATE 22021, 22P05), and a lone UTF-16 surrogate (half of
an emoji cut by a length limit, a JavaScript string, an undecodable byte kept by ``surrogateescape``) cannot be
encoded as UTF-8 at all. A contact carrying either would be acknowledged to its platform and then refused by every
consumer. So ``Contract`` passes each of its strings through ``storable`` when a model is built, whether by a
channel adapter or by a consumer parsing an event already on a topic: both become U+FFFD, the replacement
character, as a decoder marks what it could not decode, so the agent sees that something was there and two ids
that differed still differ.
"""

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def storable(text: str) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD (a pair kept as two code points is joined);
    ``text`` itself when it has neither."""
    if _UNSTORABLE.search(text) is None:
        return text
    text = text.replace("\x00", REPLACEMENT)
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def storable_value(value: Any) -> Any:
    """``value`` with ``storable`` applied to every string in it, keys too (containers are rebuilt)."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable_value(k): storable_value(v) for k, v in value.items()}
    if isinstance(value, tuple | list | frozenset | set):
        return type(value)(storable_value(v) for v in value)
    return value  # numbers, ids, times, and models, which cleaned their own strings when they were built


def validate_json(model: type[M], data: str | bytes) -> M:
    """``model`` parsed from JSON, also when the JSON escapes a lone surrogate (``"\\ud83d"``).

    Such JSON is valid (RFC 8259 allows it, and ``JSON.stringify`` writes it for a cut emoji) but pydantic's
    parser refuses it; the standard library's takes it, and the models then make the surrogate U+FFFD. Any other
    error is raised as pydantic raised it.
    """
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if not errors or errors[0]["type"] != "json_invalid":
            raise
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            if _SURROGATE_ESCAPE.search(text) is None:
                raise
            parsed = json.loads(text)
        except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deep: pydantic's error stands
            raise exc from None
    return model.model_validate(storable_value(parsed))
