"""Form posts of the email providers, parsed from the bytes already read (the body limit applies):
``multipart/form-data`` with python-multipart's streaming parser, ``x-www-form-urlencoded`` with
the stdlib. Uploaded files are hashed while they stream past and never kept; only the fields named
in ``keep`` (the raw MIME of "send raw" posts) are kept even when posted as files."""

import hashlib
from dataclasses import dataclass, field
from email.message import Message
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from services.channels.email.headers import decode_text
from services.channels.email.inbox import AttachmentTooLarge, MimeTooComplex
from services.channels.email.mime import FilePart
from services.channels.exceptions import MalformedBody

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FIELD_ALLOWANCE = 64
"""Form parts beyond the attachments: the providers post about 20 fields."""


@dataclass(slots=True)
class Form:
    fields: dict[str, bytes] = field(default_factory=dict)
    """Field values by lower-cased name (the first of repeated names)."""
    files: list[FilePart] = field(default_factory=list)


class _Collector:
    """python-multipart callbacks: collect fields, hash files, enforce the part and file limits."""

    def __init__(self, form: Form, *, max_parts: int, max_file_bytes: int, keep: frozenset[str]) -> None:
        self.form = form
        self.parts_left = max_parts
        self.max_file_bytes = max_file_bytes
        self.keep = keep
        self.ended = False
        self.headers: dict[str, str] = {}
        self.header_name = bytearray()
        self.header_value = bytearray()
        self.name = ""
        self.filename: str | None = None
        self.content_type = ""
        self.buffer: list[bytes] | None = None
        self.hasher: hashlib._Hash | None = None
        self.size = 0

    def callbacks(self) -> "MultipartCallbacks":
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value_data,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_end": self.end,
        }

    def part_begin(self) -> None:
        self.parts_left -= 1
        if self.parts_left < 0:
            raise MimeTooComplex("the form has too many parts")
        self.headers = {}
        self.buffer = None
        self.hasher = None
        self.size = 0

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def header_value_data(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.header_name.decode("latin-1").strip().lower()] = self.header_value.decode("latin-1")
        self.header_name.clear()
        self.header_value.clear()

    def headers_finished(self) -> None:
        disposition = self.headers.get("content-disposition", "")
        _, params = parse_options_header(disposition)
        name = params.get(b"name")
        filename = params.get(b"filename")
        if filename is None and "filename*" in disposition.lower():
            extended = Message()
            extended["content-disposition"] = disposition
            filename = (extended.get_filename() or "").encode()
        self.name = decode_text(name, "utf-8").lower() if name else ""
        self.filename = decode_text(filename, "utf-8") if filename is not None else None
        content_type, _ = parse_options_header(self.headers.get("content-type"))
        self.content_type = content_type.decode("latin-1")
        if not self.name:
            return  # a nameless part is skipped
        if self.filename is None or self.name in self.keep:
            self.buffer = []
        else:
            self.hasher = hashlib.sha256()

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.buffer is not None:
            self.buffer.append(data[start:end])
        elif self.hasher is not None:
            self.size += end - start
            if self.size > self.max_file_bytes:
                raise AttachmentTooLarge(
                    f"attachment {self.filename or self.name!r} is over the limit of {self.max_file_bytes} bytes"
                )
            self.hasher.update(memoryview(data)[start:end])

    def part_end(self) -> None:
        if self.buffer is not None:
            self.form.fields.setdefault(self.name, b"".join(self.buffer))
        elif self.hasher is not None:
            self.form.files.append(
                FilePart(
                    field=self.name,
                    filename=self.filename or "",
                    content_type=self.content_type,
                    size=self.size,
                    sha256=self.hasher.hexdigest(),
                )
            )
        self.buffer = None
        self.hasher = None

    def end(self) -> None:
        self.ended = True


def parse_multipart(
    body: bytes, content_type: str, *, max_parts: int, max_file_bytes: int, keep: frozenset[str] = frozenset()
) -> Form:
    """The fields and (hashed) files of a ``multipart/form-data`` body."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise MalformedBody("multipart/form-data without a boundary parameter in Content-Type")
    form = Form()
    collector = _Collector(form, max_parts=max_parts + FIELD_ALLOWANCE, max_file_bytes=max_file_bytes, keep=keep)
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise MalformedBody(f"malformed multipart body: {exc}") from exc
    if not collector.ended:
        raise MalformedBody("the multipart body ends before its closing boundary")
    return form


def parse_urlencoded(body: bytes, *, max_fields: int) -> Form:
    """The fields of an ``application/x-www-form-urlencoded`` body (values as bytes, percent-decoded)."""
    try:
        pairs = parse_qsl(
            body.decode("latin-1"),
            keep_blank_values=True,
            max_num_fields=max_fields + FIELD_ALLOWANCE,
            encoding="latin-1",
        )
    except ValueError as exc:
        raise MimeTooComplex(f"the form has too many fields: {exc}") from exc
    form = Form()
    for name, value in pairs:
        form.fields.setdefault(name.lower(), value.encode("latin-1"))
    return form
