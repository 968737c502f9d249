"""Text that PostgreSQL can store: names, groups and skills end up in text and JSONB columns, which refuse NUL
characters and unpaired surrogates. Refusing them here turns what would be a database error (a 500, or a contact
event sent to the dead-letter topic) into a validation error that names the field."""

from typing import Annotated

from pydantic import AfterValidator


def _storable(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (it has an unpaired surrogate)") from None
    return text


Text = Annotated[str, AfterValidator(_storable)]
