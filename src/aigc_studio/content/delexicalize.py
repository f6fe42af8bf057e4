"""Delexicalisation: values a model must copy verbatim (a venue's name) become placeholders.

A conditional model trained on ``name[The Eagle]`` → "The Eagle is a pub ..." has to learn to spell every
venue it has seen and cannot spell one it has not. Trained instead on ``name[__name__]`` → "__name__ is a pub
...", it learns where a name goes, and the real value is put back after generation: every venue a business
gives works, seen in training or not. This is the standard treatment of E2E's ``name`` and ``near`` slots
(Dušek & Jurčíček 2016; most E2E challenge systems).

Training data is delexicalised by ``aigc data prepare --delexicalize name,near``; the model directory records
the slots (``generation_config.json``), and the builtin backend applies the same transformation to each
prompt and :func:`relexicalize` to each candidate, so callers never see placeholders.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from aigc_studio.content.attributes import format_mr, parse_attributes
from aigc_studio.errors import AigcError


def placeholder(slot: str) -> str:
    """The text that stands for ``slot``'s value, e.g. ``__name__``; plain text, so any tokenizer keeps it."""
    return f"__{slot.replace(' ', '_')}__"


def delexicalize(source: str, target: str | None, slots: Sequence[str]) -> tuple[str, str | None, dict[str, str]]:
    """Replace the values of ``slots`` by placeholders in an E2E-style ``source`` and in ``target``.

    Args:
        source: a meaning representation such as ``name[The Eagle], eatType[pub]``; a source in another
            form (or one that does not parse) is returned unchanged.
        target: the reference text, or None at generation time; each value is replaced wherever it occurs,
            case-insensitively, longest value first so that one value inside another is not split.
        slots: the slot names to delexicalise, e.g. ``("name", "near")``.

    Returns:
        ``(source, target, values)`` where ``values`` maps each placeholder to the value it replaced.
    """
    if not slots or "[" not in source:
        return source, target, {}
    try:
        attributes = parse_attributes(source)
    except AigcError:
        return source, target, {}
    values = {placeholder(slot): attributes[slot] for slot in slots if attributes.get(slot)}
    if not values:
        return source, target, {}
    for slot in slots:
        if attributes.get(slot):
            attributes[slot] = placeholder(slot)
    if target is not None:
        for token, value in sorted(values.items(), key=lambda item: -len(item[1])):
            target = re.sub(re.escape(value), token, target, flags=re.IGNORECASE)
    return format_mr(attributes), target, values


def relexicalize(text: str, values: dict[str, str]) -> str:
    """Put the real values back in place of their placeholders."""
    for token, value in values.items():
        text = text.replace(token, value)
    return text
