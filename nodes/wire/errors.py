"""The one error type of all decoders."""


class DecodeError(ValueError):
    """Malformed input. `reason` is a short machine-friendly tag, the message says what is wrong.

    Daemons count drops by `reason`, so keep reasons stable and few per decoder.
    """

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


def need(data: bytes, length: int, what: str) -> None:
    """Raise DecodeError('truncated') unless data holds at least `length` bytes."""
    if len(data) < length:
        raise DecodeError("truncated", f"{what} needs {length} bytes, got {len(data)}")
