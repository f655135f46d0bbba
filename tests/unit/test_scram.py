"""SCRAM-SHA-256 verifiers as PostgreSQL stores them."""

import base64

import pytest

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


# Made by PostgreSQL 15.18 itself from each plaintext password (the server runs SASLprep on
# it, as libpq does on the password a client logs in with): SET password_encryption =
# 'scram-sha-256'; CREATE ROLE … PASSWORD '<password>'; then SELECT rolpassword.
POSTGRES_SASLPREP_VERIFIERS = {
    "ab\u0007cd": (  # pure ASCII passes unchanged, control characters too
        "SCRAM-SHA-256$4096:0t9xFqt/y38O5vZ+TD7O9Q==$"
        "X05yFpeUa3ScPhGvpstodw07UZJTLtY7FdQgANp88jE=:5jo+VhbIx3Ij1EmIGYts1h2ofJDyEZA+pj4UawdS5QU="),
    "\u0627\u2168": (  # right-to-left and left-to-right mixed: prohibited, used as it is
        "SCRAM-SHA-256$4096:sxf+yMRhTLJh6lppdStTrg==$"
        "q3em6fXs0p84mHCWrOuiXGEEldiiVYBzXMjIYa8me9M=:/6K+Z73V1RNu0Yphee2YgYs5a4wlCG5dF2fr1TeFUFw="),
    "\u00fc\u0007": (  # a control character in a non-ASCII password: prohibited, used as it is
        "SCRAM-SHA-256$4096:RD6EV13HaVEPwUW/VqkquQ==$"
        "RKTZ8+C8OrxuVNVYeW8ayoNxqeiqpLXDNIVuFd8dims=:llkMyv0IEVdMb23gFvgbxxVcIvTurRNrX+XTLad8YlY="),
    "\ufb01sh": (  # NFKC: the ligature becomes 'fi'
        "SCRAM-SHA-256$4096:bqzOEo+rIHpZzjEYDD8eGw==$"
        "swK4Ki6dbdrHtPCmvxreJen1M22mN7wk8UYZL2P95u0=:UGjSqVK+CarfgGwS9ivGDvVvMUMf26lmlVf687asP3w="),
    "a\u00a0b c": (  # a no-break space becomes a space
        "SCRAM-SHA-256$4096:WCJjZsRnYaL84x5OgZofcw==$"
        "fS6wrQbWIBNC57KOyP7/OLfmpcnAXE1mPFIg7HVxZpY=:Q+jcyOd27fNfB7wlX5Ey0MYj4Xnk/2/hTRoQXuH5aEc="),
    "pa\u0308sswo\u0308rd": (  # decomposed umlauts are composed (NFKC)
        "SCRAM-SHA-256$4096:6heT1vPz5YuMUINcXZrDFA==$"
        "ziCFf7NgHd1iJ1/brm39QP8x8OKz17vKtb3Da+1luJM=:C8Jko9xultmFvqtZddEbtq1Z1tmSb4BNG1NaYAfnfPk="),
    "\u00ad\u034f": (  # nothing left after mapping: used as it is
        "SCRAM-SHA-256$4096:lEhfNz6pbkN1Gk0CTnABWA==$"
        "yIz+20c/9JSeNxG8/5/gqjYWTcevE87VRZqhwNlaYZU=:MAwLX0LxCBsyU5R3df1pZhbTwDE2mmLm9QEQNpSwths="),
    "\u2168": (  # NFKC: ROMAN NUMERAL NINE becomes 'IX'
        "SCRAM-SHA-256$4096:kmsAS9DH3+U31YKV540RfQ==$"
        "f2lG3dwNvhQFNBEigTKDf2u66AGbvtFmi0qrovq7gbE=:G5G1qXB525zLh+sqN69Gh8KyJuYDKjIa8l6xy/TdvTk="),
    "I\u00adX": (  # RFC 4013's own example: the soft hyphen is mapped to nothing
        "SCRAM-SHA-256$4096:tiyIxoHo2XGSMVP9SFUeFw==$"
        "wMAVTuVvXJ+DVt0jLYW3bhzXV0bcswH5a2bdNzc7h2w=:I08JFuKwRl7OVju0Sup/y0zAD8a9ofOAbult2PKKhIk="),
    "\ufb01\U0001f600": (  # a code point unassigned in Unicode 3.2: prohibited, used as it is
        "SCRAM-SHA-256$4096:4CbwTQpsfS090jrXqbRKnA==$"
        "V9NkFxUl7zbFmWICJiDdv7rThTqqNL5txvxj2tWt0zI=:Pnu6N3YpJl3U8Lvv+8EztPNfKprf4Fhn30dS5ReRGnQ="),
    "\u00ad\u200b": (  # U+200B is a space and 'mapped to nothing': PostgreSQL makes it a space
        "SCRAM-SHA-256$4096:WTO9CgOSSXc8+YIiySiqvg==$"
        "/p3cysEOohJe7SzKHs4lFLnnxc+yqNwY276s5oN0rSs=:IfB0YkzFTzjExsinP2QybBj8d6RnuWb+comT1Yvhbo4="),
}


@pytest.mark.parametrize("password", POSTGRES_SASLPREP_VERIFIERS)
def test_saslprep_as_postgres_does_it(password):
    """A verifier PostgreSQL would make, so that libpq's login with the same password matches."""
    made_by_postgres = POSTGRES_SASLPREP_VERIFIERS[password]
    salt = base64.b64decode(made_by_postgres.split("$")[1].split(":")[1])
    assert scram.verifier(password, salt=salt) == made_by_postgres
    assert scram.matches(password, made_by_postgres)


def test_saslprep_folds_equivalent_passwords():
    # RFC 4013, section 3: "I<U+00AD>X" and "<U+2168>" both prepare to "IX".
    assert scram.saslprep("I\u00adX") == scram.saslprep("\u2168") == b"IX"
    v = scram.verifier("IX")
    assert scram.matches("I\u00adX", v) and scram.matches("\u2168", v)


def test_bytes_that_are_not_utf8_are_hashed_as_they_are():
    # os.environ turns undecodable bytes into lone surrogates; libpq would hash the bytes.
    assert scram.saslprep(b"\xff\xfepw".decode("utf-8", "surrogateescape")) == b"\xff\xfepw"


def test_digest_tells_a_password_without_the_keys():
    v = scram.verifier("right")
    d = scram.digest(v)
    params, keys = v.split("$")[1:]
    stored_key, server_key = keys.split(":")
    assert stored_key not in d and server_key not in d and "SCRAM-SHA-256$" not in d
    assert d.startswith(params + ":")  # iterations and salt stay
    assert scram.matches_digest("right", d)
    assert not scram.matches_digest("wrong", d)
    assert scram.digest("md5" + "0" * 32) == "" and not scram.matches_digest("right", "")
    assert not scram.matches_digest("right", "garbage")
