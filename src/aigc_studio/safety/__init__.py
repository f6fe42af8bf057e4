"""Governance building blocks: content moderation and personal-data detection, redaction and pseudonyms.

* :mod:`~aigc_studio.safety.normalize`: evasion-resistant text normalisation with offsets back to the original.
* :mod:`~aigc_studio.safety.moderation`: TOML policies, :class:`Moderator`, the optional trained classifier.
* :mod:`~aigc_studio.safety.pii`: :func:`detect` and :func:`redact` for emails, phones, IDs, cards, IPs, names.
* :mod:`~aigc_studio.safety.vault`: :class:`PseudonymVault`, reversible pseudonyms in an encrypted file.
"""

from aigc_studio.safety.moderation import (
    Match,
    ModerationClassifier,
    ModerationResult,
    Moderator,
    Policy,
    load_policy,
    to_openai,
)
from aigc_studio.safety.normalize import NormalizedText, normalize
from aigc_studio.safety.pii import PII_TYPES, Entity, detect, redact
from aigc_studio.safety.vault import PseudonymVault, generate_key_file

__all__ = [
    "PII_TYPES",
    "Entity",
    "Match",
    "ModerationClassifier",
    "ModerationResult",
    "Moderator",
    "NormalizedText",
    "Policy",
    "PseudonymVault",
    "detect",
    "generate_key_file",
    "load_policy",
    "normalize",
    "redact",
    "to_openai",
]
