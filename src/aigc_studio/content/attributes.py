"""Request attributes: parse the forms users and data sets write them in, and render them back.

A content request carries attributes such as ``name=The Eagle; food=French``. Four written forms are
accepted and all give the same ordered ``dict[str, str]``:

* ``key=value; key=value`` (``;`` or newlines separate pairs; a value may contain ``=`` or ``#``),
* a JSON object, as a string or an already-decoded ``dict``,
* an E2E meaning representation: ``name[The Eagle], eatType[coffee shop], customer rating[5 out of 5]``,
* AdvertiseGen's ``类型#裤*版型#宽松*风格#性感``.

The form is recognised by the first structural character of the text: ``[`` means an E2E MR, ``=``
means key=value pairs, ``#`` means AdvertiseGen, and text starting with ``{`` is JSON. So ``color=#fff``
is a key=value pair and ``name[A=B]`` an MR.

Repeated keys: AdvertiseGen repeats keys on purpose (``风格#复古*风格#简约``); their values are kept in
order and joined with :data:`MULTI_VALUE_SEPARATOR` ``、`` (the Chinese enumeration comma), giving
``{"风格": "复古、简约"}``. A JSON list value is joined the same way. In the other forms a key given twice
with two different values is an error, since one of them would silently be lost; the same value twice
is harmless and kept once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aigc_studio.errors import AigcError

MULTI_VALUE_SEPARATOR = "、"

ACCEPTED_FORMS = (
    "accepted forms: 'key=value; key=value', a JSON object, an E2E MR like 'name[The Eagle], food[French]' "
    "or AdvertiseGen's '类型#裤*风格#简约'"
)


def _error(problem: str) -> AigcError:
    return AigcError(f"{problem}; {ACCEPTED_FORMS}", param="attributes")


class _AttributeCollector:
    """Builds the ordered attribute dict, applying one rule for empty keys, empty values and repeats."""

    def __init__(self, allow_repeats: bool) -> None:
        self.allow_repeats = allow_repeats
        self.values: dict[str, list[str]] = {}

    def add(self, key: str, value: str) -> None:
        key, value = key.strip(), value.strip()
        if not key:
            raise _error(f"attribute with value {value!r} has an empty key")
        if not value:
            raise _error(f"attribute {key!r} has an empty value; give it a value or leave it out")
        existing = self.values.setdefault(key, [])
        if value in existing:
            return
        if existing and not self.allow_repeats:
            raise _error(f"attribute {key!r} is given twice with different values ({existing[0]!r} and {value!r}); keep one")
        existing.append(value)

    def result(self) -> dict[str, str]:
        if not self.values:
            raise _error("no attributes found")
        return {key: MULTI_VALUE_SEPARATOR.join(values) for key, values in self.values.items()}


def _scalar_to_str(key: str, value: Any) -> str:
    # bool first: it is an int subclass, and E2E writes booleans as yes/no (familyFriendly[yes]).
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise _error(f"attribute {key!r} has a {type(value).__name__} value; values must be text, numbers or true/false")


def _parse_mapping(mapping: Mapping[Any, Any]) -> dict[str, str]:
    collector = _AttributeCollector(allow_repeats=True)
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise _error(f"attribute key {key!r} is not text")
        values = value if isinstance(value, list) else [value]
        for item in values:
            collector.add(key, _scalar_to_str(key, item))
    return collector.result()


def _parse_json(text: str) -> dict[str, str]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as error:
        raise _error(f"malformed JSON attributes ({error.msg} at character {error.pos})") from None
    if not isinstance(obj, dict):
        raise _error(f"JSON attributes must be an object, got {type(obj).__name__}")
    return _parse_mapping(obj)


def _parse_mr(text: str) -> dict[str, str]:
    """Parse ``key[value], key[value]``: a scan rather than a regex, so each malformed spot gets its own message."""
    collector = _AttributeCollector(allow_repeats=False)
    position = 0
    while position < len(text):
        if text[position] in ", \t\r\n":
            position += 1
            continue
        open_at = text.find("[", position)
        if open_at == -1:
            raise _error(f"text {text[position:].strip()!r} after the last attribute has no [value]")
        key = text[position:open_at]
        if "]" in key:
            raise _error(f"unbalanced ']' in {key.strip()!r}")
        if "," in key:
            raise _error(f"{key.split(',')[0].strip()!r} has no [value]")
        close_at = text.find("]", open_at + 1)
        if close_at == -1:
            raise _error(f"unbalanced '[' after {key.strip()!r}: missing ']'")
        value = text[open_at + 1 : close_at]
        if "[" in value:
            raise _error(f"unbalanced '[' in the value of {key.strip()!r}: brackets cannot nest")
        collector.add(key, value)
        position = close_at + 1
        rest = text[position:].lstrip(" \t\r\n")
        if rest and not rest.startswith(","):
            raise _error(f"expected ',' after {key.strip()}[{value}], found {rest[:20]!r}")
    return collector.result()


def _parse_key_values(text: str) -> dict[str, str]:
    collector = _AttributeCollector(allow_repeats=False)
    for part in text.replace("\n", ";").split(";"):
        if not part.strip():
            continue
        if "=" not in part:
            raise _error(f"{part.strip()!r} is not a key=value pair")
        key, value = part.split("=", 1)
        collector.add(key, value)
    return collector.result()


def _parse_advertisegen(text: str) -> dict[str, str]:
    collector = _AttributeCollector(allow_repeats=True)
    for part in text.split("*"):
        if not part.strip():
            continue
        if "#" not in part:
            raise _error(f"{part.strip()!r} is not a key#value pair")
        key, value = part.split("#", 1)
        collector.add(key, value)
    return collector.result()


def parse_attributes(text_or_dict: str | Mapping[str, Any]) -> dict[str, str]:
    """Parse request attributes from any accepted form into an ordered ``{key: value}`` dict.

    Args:
        text_or_dict: ``key=value; key=value``, a JSON object (text or dict), an E2E meaning representation
            ``name[The Eagle], food[French]``, or AdvertiseGen ``类型#裤*风格#简约``. Keys and values are
            stripped; JSON/dict values may be text, numbers, true/false (→ ``yes``/``no``) or lists of those.

    Returns:
        The attributes in the order given. Repeated AdvertiseGen keys and JSON lists become one value joined
        with ``、`` (e.g. ``{"风格": "复古、简约"}``).

    Raises:
        AigcError: empty input, an unknown form, an unbalanced bracket, an empty key or value, a duplicate
            key with different values, malformed JSON or a nested value; the message names the problem and
            lists the accepted forms (``param="attributes"``).
    """
    if isinstance(text_or_dict, Mapping):
        return _parse_mapping(text_or_dict)
    if not isinstance(text_or_dict, str):
        raise _error(f"attributes must be text or a dict, got {type(text_or_dict).__name__}")
    text = text_or_dict.strip()
    if not text:
        raise _error("attributes are empty")
    if text.startswith("{"):
        return _parse_json(text)
    markers = {marker: text.find(marker) for marker in "[=#" if marker in text}
    if not markers:
        raise _error(f"cannot tell the form of attributes {text[:40]!r}")
    first_marker = min(markers, key=markers.__getitem__)
    parsers = {"[": _parse_mr, "=": _parse_key_values, "#": _parse_advertisegen}
    return parsers[first_marker](text)


def format_mr(attributes: str | Mapping[str, Any]) -> str:
    """Render attributes as an E2E meaning representation, ``key[value], key[value]``, in their order.

    Args:
        attributes: a dict or any form :func:`parse_attributes` accepts.

    Returns:
        The MR text; ``parse_attributes(format_mr(a)) == a`` for every ``a`` it accepts.

    Raises:
        AigcError: the attributes do not parse, or a key or value contains a character the MR form cannot
            hold (``[`` or ``]`` anywhere; ``,``, ``=`` or ``#`` in a key).
    """
    parsed = parse_attributes(attributes)
    for key, value in parsed.items():
        # '=' or '#' before the '[' would make the MR read back as another form (see parse_attributes).
        if any(char in key for char in "[],=#") or key.startswith("{"):
            raise AigcError(
                f"attribute key {key!r} contains one of '[ ] , = #' or starts with '{{'; "
                "an E2E MR cannot hold it, rename the key",
                param="attributes",
            )
        if "[" in value or "]" in value:
            raise AigcError(
                f"value {value!r} of {key!r} contains '[' or ']'; an E2E MR cannot hold it, remove the brackets",
                param="attributes",
            )
    return ", ".join(f"{key}[{value}]" for key, value in parsed.items())
