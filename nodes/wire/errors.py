"""The one error type of all decoders."""


class DecodeError(ValueError):
    """Malformed input. `reason` is a short machine-friendly tag, the message says what is wrong.

    Daemons count drops by `reason`, so keep reasons stable and few per decoder.
    """

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        self.authenticated = False  # found inside a payload chain whose integrity checked (IKE SK)
        super().__init__(f"{reason}: {detail}" if detail else reason)


class UnsupportedCriticalPayload(DecodeError):
    """A payload of a type the decoder does not know, with the critical bit set (RFC 7296 2.5, 3.2):
    the receiver answers UNSUPPORTED_CRITICAL_PAYLOAD naming `payload_type`."""

    def __init__(self, payload_type: int):
        super().__init__("unsupported_critical_payload", f"unknown payload type {payload_type} marked critical")
        self.payload_type = payload_type


def need(data: bytes, length: int, what: str) -> None:
    """Raise DecodeError('truncated') unless data holds at least `length` bytes."""
    if len(data) < length:
        raise DecodeError("truncated", f"{what} needs {length} bytes, got {len(data)}")
