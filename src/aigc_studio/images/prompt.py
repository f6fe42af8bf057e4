"""Reading a product category out of a text prompt: ``"a red ankle boot"`` → ``ankle-boot``.

The image models are conditioned on a class, not on free text, so an OpenAI-style ``prompt`` must name one
of the model's categories. :func:`label_from_prompt` finds it: a class index (``"9"``), a class name, or a
phrase holding one, case-insensitive, with spaces, hyphens or nothing between its words (``ankle boot``,
``ankle-boot``, ``ankleboot``) and an optional plural ``s``/``es``. A longer name wins over one inside it
(``t-shirt`` over ``shirt``); a prompt naming two different categories is refused rather than guessed.
"""

from __future__ import annotations

import re

from aigc_studio.errors import AigcError

_NON_WORD = re.compile(r"[^a-z0-9]+")


def _normalise(text: str) -> str:
    return _NON_WORD.sub(" ", text.lower()).strip()


def _forms(name: str) -> set[str]:
    words = _normalise(name)
    return {words, words.replace(" ", "")} - {""}


def label_from_prompt(prompt: str, class_names: list[str]) -> int:
    """The index of the one category ``prompt`` names.

    Raises:
        AigcError: (param ``prompt``) no category is named (the message lists them), or several are.
    """
    text = _normalise(prompt)
    if text.isdigit() and int(text) < len(class_names):
        return int(text)
    spans: list[tuple[int, int, int]] = []
    for index, name in enumerate(class_names):
        for form in _forms(name):
            pattern = rf"(?<![a-z0-9]){re.escape(form)}(?:e?s)?(?![a-z0-9])"
            spans.extend((match.start(), match.end(), index) for match in re.finditer(pattern, text))
    # drop a match lying inside a longer one ("shirt" inside "t shirt")
    kept = {index for start, end, index in spans
            if not any(s <= start and end <= e and (e - s) > (end - start) for s, e, _ in spans)}
    if len(kept) == 1:
        return kept.pop()
    choices = ", ".join(class_names)
    if not kept:
        raise AigcError(f"the prompt names no product category of this model; name one of: {choices} "
                        '(e.g. "a red ankle-boot")', param="prompt")
    named = ", ".join(class_names[index] for index in sorted(kept))
    raise AigcError(f"the prompt names several categories ({named}); name one per request", param="prompt")
