"""FieldCipher: values sealed before Redis stores them, opened with any configured key."""

from __future__ import annotations

import base64

import pytest

from cmvoice.crypto import ENCRYPTED_PREFIX, FieldCipher, generate_key
from cmvoice.errors import ConfigurationError

OLD_KEY = generate_key()
NEW_KEY = generate_key()
#: 40 random-looking bytes: base64 all right, but not the 32 bytes of a Fernet key.
LONG_KEY = base64.urlsafe_b64encode(bytes(range(40))).decode()
VALUES = ['{"callee":"+31612345678","prompt":"Hello."}', "123456", "", "é ü 漢字"]


@pytest.mark.parametrize("value", VALUES)
def test_a_sealed_value_opens_to_itself_and_shows_nothing_of_it(value: str) -> None:
    # Given a cipher with a key
    cipher = FieldCipher([NEW_KEY])

    # When a value is sealed
    sealed = cipher.seal(value)

    # Then it is marked as a token, holds nothing readable, and opens to the value
    assert cipher.enabled
    assert sealed.startswith(ENCRYPTED_PREFIX)
    assert not value or value not in sealed
    assert cipher.open(sealed) == value


def test_sealing_twice_gives_two_different_tokens() -> None:
    # Given / When the same OTP code is sealed twice
    cipher = FieldCipher([NEW_KEY])

    # Then the tokens differ (nothing tells two equal codes apart at rest)
    assert cipher.seal("123456") != cipher.seal("123456")


@pytest.mark.parametrize("keys", [None, []])
@pytest.mark.parametrize("value", VALUES)
def test_without_a_key_values_are_stored_and_read_as_they_are(
    keys: list[str] | None, value: str
) -> None:
    cipher = FieldCipher(keys)
    assert not cipher.enabled
    assert cipher.seal(value) == value
    assert cipher.open(value) == value


@pytest.mark.parametrize("keys", [None, [NEW_KEY]])
def test_a_plain_value_written_before_a_key_was_set_passes_through(keys: list[str] | None) -> None:
    # Given a record written in plain text, then a key configured (or not)
    # When / Then
    assert FieldCipher(keys).open('{"callee":"+31612345678"}') == '{"callee":"+31612345678"}'


def test_after_a_rotation_old_values_open_and_new_ones_use_the_new_key() -> None:
    # Given a value sealed with the old key
    sealed_before = FieldCipher([OLD_KEY]).seal("123456")

    # When the key is rotated: the new key first, the old one kept
    rotated = FieldCipher([NEW_KEY, OLD_KEY])
    sealed_after = rotated.seal("654321")

    # Then the old value still opens, and the new value opens with the new key alone
    assert rotated.open(sealed_before) == "123456"
    assert FieldCipher([NEW_KEY]).open(sealed_after) == "654321"


def test_keys_with_spaces_around_them_are_read() -> None:
    # Given keys as a comma-separated list may leave them, with spaces
    cipher = FieldCipher([f" {NEW_KEY} "])

    # When / Then
    assert FieldCipher([NEW_KEY]).open(cipher.seal("x")) == "x"


def test_an_encrypted_value_without_any_key_set_names_the_variable() -> None:
    # Given a value sealed by a process that had a key
    sealed = FieldCipher([NEW_KEY]).seal("123456")

    # When a process without CMVOICE_ENCRYPTION_KEY opens it
    with pytest.raises(ConfigurationError) as caught:
        FieldCipher(None).open(sealed)

    # Then it says which variable is missing, and shows nothing of the value
    assert "CMVOICE_ENCRYPTION_KEY is not set" in str(caught.value)
    assert sealed.removeprefix(ENCRYPTED_PREFIX) not in str(caught.value)


def test_a_value_whose_key_was_removed_names_the_variable_and_shows_no_key() -> None:
    # Given a value sealed with the old key, and the old key removed from the list
    sealed = FieldCipher([OLD_KEY]).seal("123456")

    # When it is opened with the new key only
    with pytest.raises(ConfigurationError) as caught:
        FieldCipher([NEW_KEY]).open(sealed)

    # Then the message names the variable and hints at the removed key, with no key shown
    message = str(caught.value)
    assert message.startswith("CMVOICE_ENCRYPTION_KEY: no configured key decrypts a stored field")
    assert "removed" in message
    for secret in (OLD_KEY, NEW_KEY, "123456"):
        assert secret not in message


@pytest.mark.parametrize(
    "bad_key",
    ["short", "é" * 44, "", OLD_KEY[:-4], LONG_KEY],
    ids=["short", "non-ascii", "empty", "cut", "long"],
)
def test_a_malformed_key_is_refused_naming_the_variable_without_the_value(bad_key: str) -> None:
    # Given a list with one good key and one malformed one
    with pytest.raises(ConfigurationError) as caught:
        FieldCipher([NEW_KEY, bad_key])

    # Then the message names the variable and how to make a key, and quotes no key
    message = str(caught.value)
    assert message.startswith("CMVOICE_ENCRYPTION_KEY: each key must be 32 url-safe base64")
    assert "(value hidden)" in message
    assert NEW_KEY not in message
    assert not bad_key or bad_key not in message
