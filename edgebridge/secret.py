"""Credentials in configuration: a value that never prints, and the names that hint at one."""

from __future__ import annotations

import hmac
from pathlib import Path

__all__ = ["MASK", "SECRET_HINTS", "Secret", "looks_secret", "read_secret_file"]

MASK = "***"
# A password file larger than this is the wrong file (a certificate, a log), not a password.
MAX_SECRET_FILE = 65536
# Substrings of a key (librdkafka's or ours) whose value must never be printed.
SECRET_HINTS = ("password", "secret", "token", "private", "credential", "key.pem", "sasl.oauthbearer", "jaas")


class Secret:
    """A password or token. ``str()``, ``repr()`` and f-strings show ``***``; ``reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        # constant-time, as for any credential comparison
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


def looks_secret(key: str) -> bool:
    """True when a setting named ``key`` probably holds a credential (``sasl.password``, ``api_token``)."""
    lowered = key.lower()
    return any(hint in lowered for hint in SECRET_HINTS)


def read_secret_file(path: Path) -> Secret:
    """The secret held in the file at ``path``: its UTF-8 text without the trailing newline an editor
    or ``echo`` adds. ``OSError`` when it cannot be read; ``ValueError`` (never quoting the content)
    when it is not UTF-8 or is too large to be a password."""
    with open(path, "rb") as f:
        raw = f.read(MAX_SECRET_FILE + 1)
    if len(raw) > MAX_SECRET_FILE:
        raise ValueError(f"{path} is larger than {MAX_SECRET_FILE} bytes: not a password file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    return Secret(text.rstrip("\r\n"))
