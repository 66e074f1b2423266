"""Mosquitto's password file, written in Python: the operator's machine needs no ``mosquitto_passwd``.

One ``username:hash`` line per user. The hash is Mosquitto 2's default (``mosquitto_passwd``),
``$7${iterations}${salt}${hash}``: PBKDF2-HMAC-SHA512 over the password with a random 12-byte salt,
salt and 64-byte digest in standard base64. The iteration count is ``mosquitto_passwd``'s own (101):
the passwords made by ``deploy init`` are 256 random bits, which no iteration count could make
easier or harder to guess, while every CONNECT of a whole fleet reconnecting at once pays for it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["ITERATIONS", "check_username", "hash_password", "new_password", "parse", "render", "verify"]

ITERATIONS = 101
_SALT_BYTES = 12


def new_password() -> str:
    """A random password: 32 bytes, URL-safe base64 (no character that an env file or a URL quotes)."""
    return secrets.token_urlsafe(32)


def check_username(name: str) -> str:
    """``name`` if Mosquitto can hold it in its password file; ValueError otherwise."""
    # the file splits each line at its first ":"; a line break would end the line; an empty name or
    # one with a NUL never authenticates
    if not name or ":" in name or any(c in name for c in "\r\n\0"):
        raise ValueError(f"{name!r} cannot be a Mosquitto username (empty, or has ':' or a line break)")
    return name


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """The ``$7$`` hash of ``password``, as ``mosquitto_passwd`` writes it."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify(password: str, hashed: str) -> bool:
    """True when ``hashed`` (a ``$7$`` hash) is the hash of ``password``."""
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        expected = base64.b64decode(digest, validate=True)
        got = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt, validate=True),
                                  int(iterations))
    except ValueError:  # a malformed hash (binascii.Error is a ValueError)
        return False
    return hmac.compare_digest(got, expected)


def parse(text: str) -> dict[str, str]:
    """``{username: hash}`` of a password file's text; ValueError naming the line that is not one."""
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        user, colon, hashed = line.partition(":")
        if not colon or not user or not hashed:
            raise ValueError(f"line {number} is not username:hash")
        if user in users:
            raise ValueError(f"line {number}: user {user!r} appears twice")
        users[user] = hashed
    return users


def render(users: dict[str, str]) -> str:
    """The password file holding ``{username: hash}``, in the given order."""
    return "".join(f"{check_username(user)}:{hashed}\n" for user, hashed in users.items())
