"""Argument types for the ``edgebridge`` subcommands' parsers: a bad value is an argparse error.

Given as ``type=`` to ``add_argument``, each raises :class:`argparse.ArgumentTypeError`, so a bad
argument ends as argparse ends every usage error: the usage line, one line naming the argument and
what is wrong with it, exit status 2; never a traceback, and before anything is started or written.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgebridge._validate import is_deviceid

__all__ = ["device_id", "json_object", "positive_float", "positive_int", "user_password"]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def device_id(text: str) -> str:
    """A device id by the one rule of :func:`edgebridge.envelope.is_deviceid`."""
    if not is_deviceid(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a device id (1..128 printable characters, no space, '/', '+', '#', "
            "not '.' or '..')")
    return text


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"a JSON object is expected, not {type(value).__name__}")
    return value


def user_password(text: str) -> tuple[str, str]:
    """``USER:PASSWORD`` (the password may hold colons; neither part may be empty)."""
    user, colon, password = text.partition(":")
    if not colon or not user or not password:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")  # never echo: it may be a password
    return user, password
