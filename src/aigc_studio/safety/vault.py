"""Reversible pseudonyms for personal data, kept in an encrypted file.

:meth:`PseudonymVault.pseudonymize` replaces each entity found by :func:`aigc_studio.safety.pii.detect`
with a token such as ``<PHONE#7f3a9c1d>``; the same value always gets the same token, so a conversation
stays readable. :meth:`PseudonymVault.reveal` puts the real values back, e.g. into a support reply for the
right customer. The table token -> value lives only in the vault file, encrypted with Fernet
(AES-128-CBC + HMAC-SHA256, from ``cryptography``). The key comes from a passphrase through PBKDF2-HMAC-
SHA256 (salt and iteration count stored in the file) or from a key file made by :func:`generate_key_file`.

The file is JSON: ``{"format", "version", "kdf": {...}, "data": <Fernet token>}``; every change is written
with :func:`aigc_studio.fileio.atomic_write`, so a crash leaves the previous vault intact. One process at a
time should write a given vault.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write, atomic_write_with, require_file
from aigc_studio.safety.pii import Entity, canonical_value, detect, replace_entities

_FORMAT = "aigc-pseudonym-vault"
# OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.
DEFAULT_KDF_ITERATIONS = 600_000
_TOKEN = re.compile(r"<([A-Z_]+)#([0-9a-f]{8,})>")


def generate_key_file(path: str | Path) -> Path:
    """Write a new random Fernet key to ``path`` (readable by its owner only) and return the path.

    Raises:
        AigcError: ``path`` already exists (a key is never overwritten: the vaults it opens would be lost).
    """
    path = Path(path)
    if path.exists():
        raise AigcError(f"key file {path} already exists; choose a new path (overwriting it would lock its vaults)")
    key = Fernet.generate_key()

    # Readable by its owner only: the key unlocks every pseudonym in the vaults it protects.
    return atomic_write_with(path, lambda tmp: tmp.write_bytes(key + b"\n"), mode=0o600)


def _read_key_file(path: str | Path) -> bytes:
    key = require_file(path, "key file").read_bytes().strip()
    try:
        Fernet(key)
    except ValueError:
        raise AigcError(f"key file {path} does not hold a Fernet key; create one with generate_key_file") from None
    return key


def _derive_key(passphrase: str, salt: bytes, iterations: int) -> bytes:
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations)
    return base64.urlsafe_b64encode(kdf.derive(passphrase.encode("utf-8")))


class PseudonymVault:
    """An encrypted table of pseudonym tokens and the personal data they stand for.

    Open one with :meth:`open`; use :meth:`pseudonymize` and :meth:`reveal`. Each call that adds a value
    saves the vault.
    """

    def __init__(self, path: Path, fernet: Fernet, kdf: dict[str, object], entries: dict[str, str]) -> None:
        self.path = path
        self._fernet = fernet
        self._kdf = kdf
        self._values = entries  # token -> original text
        self._tokens = {self._value_key(token, value): token for token, value in entries.items()}

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        passphrase: str | None = None,
        key_file: str | Path | None = None,
        kdf_iterations: int = DEFAULT_KDF_ITERATIONS,
    ) -> PseudonymVault:
        """Open the vault at ``path``, or create an empty one there if there is no file yet.

        Args:
            path: the vault file.
            passphrase: the secret to derive the key from; or
            key_file: a file made by :func:`generate_key_file` (exactly one of the two).
            kdf_iterations: PBKDF2 iterations for a *new* passphrase vault (an existing one keeps its own).

        Returns:
            The open vault.

        Raises:
            AigcError: neither or both secrets are given, the file is not a vault, or the passphrase or key
                is not the one the vault was created with.
        """
        path = Path(path)
        if (passphrase is None) == (key_file is None):
            raise AigcError("give exactly one of passphrase or key_file to open a vault", param="passphrase")
        if passphrase is not None and not passphrase:
            raise AigcError("the vault passphrase is empty; choose a non-empty one", param="passphrase")
        if not path.exists():
            if key_file is not None:
                kdf: dict[str, object] = {"algorithm": "key-file"}
                key = _read_key_file(key_file)
            else:
                salt = secrets.token_bytes(16)
                kdf = {
                    "algorithm": "pbkdf2-hmac-sha256",
                    "salt": base64.b64encode(salt).decode(),
                    "iterations": kdf_iterations,
                }
                key = _derive_key(passphrase, salt, kdf_iterations)
            vault = cls(path, Fernet(key), kdf, {})
            vault.save()
            return vault

        header = cls._read_header(path)
        kdf = header["kdf"]
        if kdf.get("algorithm") == "key-file":
            if key_file is None:
                raise AigcError(f"vault {path} was created with a key file; open it with key_file", param="key_file")
            key = _read_key_file(key_file)
        else:
            if passphrase is None:
                raise AigcError(f"vault {path} was created with a passphrase; open it with passphrase", param="passphrase")
            try:
                salt, iterations = base64.b64decode(kdf["salt"]), int(kdf["iterations"])
            except (KeyError, TypeError, ValueError):
                raise AigcError(f"vault {path} has a damaged key-derivation header; restore it from a backup") from None
            key = _derive_key(passphrase, salt, iterations)
        fernet = Fernet(key)
        try:
            payload = json.loads(fernet.decrypt(header["data"].encode("ascii")))
        except InvalidToken:
            raise AigcError(
                f"cannot decrypt vault {path}: wrong passphrase or key; use the one the vault was created with"
            ) from None
        return cls(path, fernet, kdf, dict(payload["entries"]))

    @staticmethod
    def _read_header(path: Path) -> dict:
        try:
            header = json.loads(require_file(path, "vault file").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            header = None
        if (
            not isinstance(header, dict)
            or header.get("format") != _FORMAT
            or not isinstance(header.get("data"), str)
            or not isinstance(header.get("kdf"), dict)
        ):
            raise AigcError(f"{path} is not a pseudonym vault; give the path of a vault file or a new path")
        return header

    @staticmethod
    def _value_key(token: str, value: str) -> tuple[str, str]:
        entity_type = _TOKEN.fullmatch(token).group(1)
        return entity_type, canonical_value(Entity(entity_type, 0, len(value), value))

    def __len__(self) -> int:
        return len(self._values)

    def save(self) -> Path:
        """Encrypt and atomically write the vault to its path."""
        data = self._fernet.encrypt(json.dumps({"entries": self._values}, ensure_ascii=False).encode("utf-8"))
        header = {"format": _FORMAT, "version": 1, "kdf": self._kdf, "data": data.decode("ascii")}
        return atomic_write(self.path, json.dumps(header, indent=2) + "\n")

    def token_for(self, entity: Entity) -> str:
        """The token of ``entity``'s value, minting one (not saved yet) if the value is new."""
        key = (entity.type, canonical_value(entity))
        token = self._tokens.get(key)
        if token is None:
            token = f"<{entity.type}#{secrets.token_hex(4)}>"
            while token in self._values:  # 32 random bits: a clash is rare, never silent
                token = f"<{entity.type}#{secrets.token_hex(4)}>"
            self._tokens[key] = token
            self._values[token] = entity.text
        return token

    def pseudonymize(self, text: str, entities: Sequence[Entity] | None = None) -> str:
        """Replace personal data in ``text`` with vault tokens, saving the vault if new values were added.

        Args:
            text: the text.
            entities: what to replace (default: :func:`aigc_studio.safety.pii.detect` on ``text``).

        Returns:
            The text with tokens such as ``<PHONE#7f3a9c1d>``.
        """
        entities = detect(text) if entities is None else entities
        known = len(self._values)
        result = replace_entities(text, entities, self.token_for)
        if len(self._values) != known:
            self.save()
        return result

    def reveal(self, text: str) -> str:
        """Put the original values back for every token of this vault in ``text`` (other tokens stay)."""
        return _TOKEN.sub(lambda match: self._values.get(match.group(), match.group()), text)
