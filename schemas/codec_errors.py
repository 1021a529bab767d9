"""Errors raised at the serializer edge; consumers dead-letter on any `CodecError`."""

from __future__ import annotations


class CodecError(Exception):
    """Base class; `reason` is a human-readable account of what was wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UndecodableRecord(CodecError):
    """The bytes are not a well-formed casegate record (marker, length, body, header)."""


class UnknownSchema(CodecError):
    """The writer schema (by fingerprint or event type) is not known to this reader."""


class InvalidEvent(CodecError):
    """An event or record does not fit its schema (missing field, wrong type, range)."""


class SchemaFileError(Exception):
    """A bundled or history .avsc file is malformed; a deployment bug, not bad input."""
