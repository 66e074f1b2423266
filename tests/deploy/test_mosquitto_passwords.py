"""The password file's text: hashes, parsing and the usernames it can hold."""

from __future__ import annotations

import re

import pytest

from edgebridge.deploy import mosquitto_passwords as pw


def test_hash_has_mosquitto_2s_form_and_a_fresh_salt_each_time() -> None:
    first, second = pw.hash_password("secret"), pw.hash_password("secret")
    form = re.compile(r"^\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$")  # 12-byte salt, 64-byte digest
    assert form.match(first) and form.match(second)
    assert first != second and pw.verify("secret", first) and pw.verify("secret", second)
    assert not pw.verify("Secret", first)


@pytest.mark.parametrize("hashed", ["", "$6$101$c2FsdA==$aGFzaA==", "$7$x$c2FsdA==$aGFzaA==",
                                    "$7$101$!!$aGFzaA==", "$7$101$c2FsdA=="])
def test_verify_is_false_for_anything_but_a_7_hash(hashed: str) -> None:
    assert pw.verify("secret", hashed) is False


def test_parse_and_render_round_trip_and_refuse_what_mosquitto_cannot_read() -> None:
    users = {"pump-1": pw.hash_password("a"), "dév-\"q\"": pw.hash_password("b")}
    assert pw.parse("# a comment\n\n" + pw.render(users)) == users
    with pytest.raises(ValueError, match="line 2 is not username:hash"):
        pw.parse("a:$7$x\nno-colon\n")
    with pytest.raises(ValueError, match="line 2: user 'a' appears twice"):
        pw.parse("a:$7$x\na:$7$y\n")
    for bad in ("", "a:b", "a\nb"):
        with pytest.raises(ValueError, match="cannot be a Mosquitto username"):
            pw.render({bad: "$7$x"})


def test_new_passwords_are_256_random_bits_with_nothing_to_quote() -> None:
    made = {pw.new_password() for _ in range(100)}
    assert len(made) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", p) for p in made)
