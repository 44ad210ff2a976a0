"""The one result shape every decoder of this package returns: a value or an error, never an exception."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Decoded:
    """`value` when decoding worked, else `error` (a short reason such as "request: 20 bytes, need 24").

    Attribute access falls through to the value, so `parse_request(b).lifetime` works when the
    input was good; on an error that access raises AttributeError naming the error."""

    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def __bool__(self) -> bool:
        return self.error is None

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = object.__getattribute__(self, "value")
        error = object.__getattribute__(self, "error")
        if error is not None:
            raise AttributeError(f"{name}: nothing decoded ({error})")
        return getattr(value, name)


class Malformed(Exception):
    """Raised inside decoders only; `safely` turns it into `Decoded(error=...)`."""


def need(data: bytes, length: int, what: str) -> None:
    if len(data) < length:
        raise Malformed(f"{what}: {len(data)} bytes, need {length}")


def safely(decode: Callable[..., Any], *args, **kwargs) -> Decoded:
    """Run a raising decoder and wrap its outcome; any unexpected exception becomes an error too."""
    try:
        return Decoded(decode(*args, **kwargs))
    except Malformed as e:
        return Decoded(error=str(e))
    except Exception as e:  # a decoder bug must not crash a conformance run
        return Decoded(error=f"internal decoder error: {type(e).__name__}: {e}")
