"""The pseudonym vault: round trip, persistence, wrong keys, atomic encrypted storage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aigc_studio.errors import AigcError
from aigc_studio.safety.vault import PseudonymVault, generate_key_file

# Few PBKDF2 iterations keep the tests fast; the derivation is the same code as with the default.
FAST = 1_000


def test_pseudonymize_and_reveal_round_trip_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "customers.vault"
    vault = PseudonymVault.open(path, passphrase="correct horse", kdf_iterations=FAST)
    text = "客户张伟的手机13812345678，邮箱 zhang.wei@example.com；another phone +86 138 1234 5678."
    hidden = vault.pseudonymize(text)
    person, phone, email, phone_again = re.findall(r"<[A-Z_]+#[0-9a-f]{8}>", hidden)
    assert hidden == f"客户{person}的手机{phone}，邮箱 {email}；another phone {phone_again}."
    assert phone == phone_again  # the same number, however written, gets the same token
    assert person.startswith("<PERSON#") and email.startswith("<EMAIL#") and len(vault) == 3

    reopened = PseudonymVault.open(path, passphrase="correct horse")
    assert reopened.reveal(f"您好，我们已联系{person}，回电 {phone}。") == "您好，我们已联系张伟，回电 13812345678。"
    assert reopened.reveal(hidden) == "客户张伟的手机13812345678，邮箱 zhang.wei@example.com；another phone 13812345678."
    assert reopened.reveal("<PHONE#deadbeef> stays") == "<PHONE#deadbeef> stays"  # not this vault's token


def test_vault_file_holds_no_plaintext(tmp_path: Path) -> None:
    path = tmp_path / "v.vault"
    PseudonymVault.open(path, passphrase="pw", kdf_iterations=FAST).pseudonymize("mail li.na@example.com")
    content = path.read_text(encoding="utf-8")
    header = json.loads(content)
    assert header["format"] == "aigc-pseudonym-vault" and header["kdf"]["iterations"] == FAST
    assert "li.na" not in content and "example" not in content


def test_wrong_passphrase_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "v.vault"
    PseudonymVault.open(path, passphrase="right", kdf_iterations=FAST).pseudonymize("13812345678")
    with pytest.raises(AigcError, match="wrong passphrase or key"):
        PseudonymVault.open(path, passphrase="wrong")


def test_key_file_vault_and_wrong_key_file(tmp_path: Path) -> None:
    key = generate_key_file(tmp_path / "vault.key")
    assert key.stat().st_mode & 0o777 == 0o600
    path = tmp_path / "v.vault"
    hidden = PseudonymVault.open(path, key_file=key).pseudonymize("card 4111 1111 1111 1111")
    assert PseudonymVault.open(path, key_file=key).reveal(hidden) == "card 4111 1111 1111 1111"

    other = generate_key_file(tmp_path / "other.key")
    with pytest.raises(AigcError, match="wrong passphrase or key"):
        PseudonymVault.open(path, key_file=other)
    with pytest.raises(AigcError, match="created with a key file"):
        PseudonymVault.open(path, passphrase="pw")
    with pytest.raises(AigcError, match="already exists"):
        generate_key_file(key)


def test_bad_arguments_and_files(tmp_path: Path) -> None:
    with pytest.raises(AigcError, match="exactly one of passphrase or key_file"):
        PseudonymVault.open(tmp_path / "v.vault")
    not_a_vault = tmp_path / "notes.json"
    not_a_vault.write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(AigcError, match="is not a pseudonym vault"):
        PseudonymVault.open(not_a_vault, passphrase="pw")
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("not a key", encoding="utf-8")
    with pytest.raises(AigcError, match="does not hold a Fernet key"):
        PseudonymVault.open(tmp_path / "new.vault", key_file=bad_key)
