"""SCRAM-SHA-256 verifiers as PostgreSQL stores them."""

import base64

from zeroui_db import scram


# Made by PostgreSQL 15 itself: CREATE ROLE … PASSWORD 'pencil', then SELECT rolpassword.
POSTGRES_VERIFIER = (
    "SCRAM-SHA-256$4096:1oAUKOuQMi5scvvos5b41Q==$iqzRJm4+fsP94CW7/R8L9YeSt2zKfNrA2qetnLpiq8A="
    ":CEaPcpd6XPNbifvBPP7PV96bOJ3Xu9dmp5HknT9Gr8k="
)


def test_same_verifier_as_postgres():
    salt = base64.b64decode("1oAUKOuQMi5scvvos5b41Q==")
    assert scram.verifier("pencil", salt=salt) == POSTGRES_VERIFIER
    assert scram.matches("pencil", POSTGRES_VERIFIER)


def test_fresh_salt_each_time():
    assert scram.verifier("pw") != scram.verifier("pw")


def test_matches_rejects_other_passwords_and_garbage():
    v = scram.verifier("right")
    assert scram.matches("right", v)
    assert not scram.matches("wrong", v)
    assert not scram.matches("right", "md5abcdef")
    assert not scram.matches("right", "")
