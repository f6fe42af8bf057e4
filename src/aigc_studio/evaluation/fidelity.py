"""Fidelity to the input: the slot error rate (SER) of a text against the attributes it was written from.

SER is the share of input attribute values that the text leaves out (*missing*) or states differently
(*contradicted*), the measure used for the E2E NLG Challenge (Dušek et al. 2020) and data-to-text work
since Wen et al. (2015). Each slot counts once: a slot is either right, missing or contradicted.

* The 8 E2E slots use :data:`E2E_LEXICON`: for each slot, the *classes* a value can fall in (priceRange
  ``cheap`` and ``less than £20`` are both the class ``low``) and the phrases (regular expressions) that
  express each class, so paraphrases count ("kid friendly", "more than £30", "5 stars"). A slot is right
  when its class is expressed, *contradicted* when only another class is, and *missing* when none is.
  A mention preceded in its clause by a negation cue (not, n't, no, none, never, non, without, nor, less),
  with only scope words such as "a", "very", "known to be" in between, does not express its class; for
  familyFriendly a negated "yes" phrase ("isn't family friendly") expresses "no". ``name`` and ``near`` must appear verbatim (case- and accent-insensitive) and
  are blanked out before the other slots are matched, so "Raja Indian Cuisine" is not read as food[Indian].
* Any other key (and an E2E slot with a value the lexicon does not know) is right when its value appears in
  the text (case-insensitive, whitespace normalised; whole words, or a substring for Chinese). Values
  joined with ``、`` (repeated AdvertiseGen keys) are checked, and counted, one by one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from aigc_studio.content.attributes import MULTI_VALUE_SEPARATOR, parse_attributes
from aigc_studio.evaluation.text import normalize, term_pattern

SlotErrorKind = Literal["missing", "contradicted"]


@dataclass(frozen=True)
class SlotError:
    """One input value the text gets wrong."""

    slot: str
    value: str
    kind: SlotErrorKind


@dataclass(frozen=True)
class SlotLexicon:
    """How the values of one slot are written.

    Args:
        value_classes: MR value (lowercase) → the class it belongs to.
        phrases: class → regular expressions matched as whole words against normalised text (lowercase,
            accents stripped, hyphens between words turned into spaces).
        negated_as: class → the class a negated mention of it expresses (familyFriendly: "not family
            friendly" expresses "no"); negated mentions of other classes express nothing.
        extra_negation_cues: class → words that, besides not/no/never..., cancel a mention of that class
            ("outside the city centre" does not place a venue in the city centre).
    """

    value_classes: dict[str, str]
    phrases: dict[str, tuple[str, ...]]
    negated_as: dict[str, str] = field(default_factory=dict)
    extra_negation_cues: dict[str, frozenset[str]] = field(default_factory=dict)


# An optional degree word between a noun and its adjective: "price range is quite high".
_ADV = r"(?:(?:quite|very|fairly|rather|pretty|really|relatively|reasonably|extremely|super|highly|so) )?"
_RATING_NOUN = r"(?:rating|ratings|rated|rates|reviews?|score|satisfaction|reputation)"
_RATING_IS = rf"{_RATING_NOUN}(?: it)?(?: is| are| of| as)? {_ADV}(?:an? )?"
_PRICE_IS = rf"pric\w*(?: range)?(?: is| are)? {_ADV}"
_PRICE_NOUN = r"(?:cost|costs|price|prices|priced|pricing|price range)"

# The one place that says how E2E values are written. Keys are the E2E slot names.
E2E_LEXICON: dict[str, SlotLexicon] = {
    "eatType": SlotLexicon(
        value_classes={"coffee shop": "coffee shop", "pub": "pub", "restaurant": "restaurant"},
        phrases={
            "coffee shop": (r"coffee ?(?:shop|house|bar)s?", r"coffeeshops?", r"cafes?", r"coffee"),
            "pub": (r"pubs?", r"public house", r"tavern"),
            "restaurant": (r"restaurants?", r"eatery", r"eateries", r"bistro"),
        },
    ),
    "food": SlotLexicon(
        value_classes={food: food for food in ("chinese", "english", "fast food", "french", "indian", "italian", "japanese")},
        phrases={
            "chinese": (r"chinese",),
            "english": (r"english", r"british"),
            "fast food": (r"fast ?food",),
            "french": (r"french",),
            "indian": (r"indian",),
            "italian": (r"italian",),
            "japanese": (r"japanese",),
        },
    ),
    "priceRange": SlotLexicon(
        value_classes={
            "cheap": "low", "less than £20": "low",
            "moderate": "moderate", "£20-25": "moderate",
            "high": "high", "more than £30": "high",
        },
        phrases={
            "low": (
                r"cheap(?:er|est|ly)?", rf"low(?:er)? {_PRICE_NOUN}", r"inexpensive(?:ly)?", r"affordabl[ey]",
                r"budget", r"bargain", rf"{_PRICE_IS}(?:low|cheap)",
                r"(?:less than|under|below|lower than|up to) £? ?(?:20|twenty)(?! stars?)", r"£ ?20 or (?:less|under)",
            ),
            "moderate": (
                # "moderate" alone is a price, but "moderate customer rating" is not.
                rf"moderate(?:ly)?(?! (?:customer |user )?{_RATING_NOUN})", r"mid ?(?:range|priced|price|cost)",
                rf"(?:medium|average|fair|decent|reasonabl[ey]) {_PRICE_NOUN}", r"average(?:ly)? priced",
                rf"{_PRICE_IS}(?:moderate|average|medium|mid)",
                r"£ ?20 (?:to |and |or )?£? ?25", r"(?:20|twenty) (?:to |and )?(?:25|twenty five)",
            ),
            "high": (
                r"expensive", r"pricey", r"pricy", r"costly", rf"high(?:er)? {_PRICE_NOUN}", r"high(?:ly)? priced",
                r"high end", r"upscale", r"up ?market", r"luxur\w+", r"premium", rf"{_PRICE_IS}(?:high|expensive)",
                r"priced (?:higher|above)",
                rf"(?:higher|above) (?:than )?average(?: {_PRICE_NOUN})?(?! (?:customer |user )?{_RATING_NOUN})",
                r"(?:more than|over|above|greater than|upwards of|in excess of) £? ?(?:30|thirty)(?! stars?)",
                r"£ ?30 (?:or more|plus)",
            ),
        },
    ),
    "customer rating": SlotLexicon(
        value_classes={
            "low": "low", "1 out of 5": "low",
            "average": "average", "3 out of 5": "average",
            "high": "high", "5 out of 5": "high",
        },
        phrases={
            # "(?<!of ) 5 stars": in "1 out of 5 stars" the 5 is the scale, not the rating.
            "low": (
                r"low(?:ly)? rated", rf"(?:low|poor|bad) (?:customer |user )?{_RATING_NOUN}",
                r"(?:poor|bad)ly (?:rated|reviewed)", rf"{_RATING_IS}(?:low|poor|poorly|bad|badly)",
                rf"(?:lower than|below) average (?:customer |user )?{_RATING_NOUN}",
                r"(?:1|one) out (?:of )?(?:5|five)", r"(?<!of )(?:1|one) stars?", r"(?:rating|score) of (?:1|one)(?! of)",
            ),
            "average": (
                r"average(?:ly)? rated", rf"(?:average|mediocre|decent|ok|okay|middling) (?:customer |user )?{_RATING_NOUN}",
                rf"{_RATING_IS}(?:average|mediocre|ok|okay|decent|moderate|medium|middling)",
                r"(?:3|three) out (?:of )?(?:5|five)", r"(?<!of )(?:3|three) stars?", r"(?:rating|score) of (?:3|three)(?! of)",
            ),
            "high": (
                r"high(?:ly)? rated", r"(?:well|top|best) (?:rated|reviewed)",
                rf"(?:high|excellent|great|top|outstanding|perfect|five star) (?:customer |user )?{_RATING_NOUN}",
                rf"{_RATING_IS}(?:high|highly|excellent|great|top)",
                r"(?:5|five) out (?:of )?(?:5|five)", r"(?<!of )(?:5|five) stars?", r"(?:rating|score) of (?:5|five)(?! of)",
            ),
        },
    ),
    "area": SlotLexicon(
        value_classes={"riverside": "riverside", "city centre": "city centre"},
        phrases={
            "riverside": (r"river\w*", r"waterfront", r"waterside"),
            "city centre": (
                r"cit(?:y|ies) cent(?:re|er|ral)", r"cent(?:re|er)", r"central(?:ly)?", r"downtown",
                r"(?:middle|heart) of (?:the )?(?:city|town)", r"inner city",
            ),
        },
        extra_negation_cues={
            "city centre": frozenset(
                {"outside", "near", "nearby", "close", "far", "away", "outskirts", "north", "south", "east", "west"}
            ),
        },
    ),
    "familyFriendly": SlotLexicon(
        value_classes={"yes": "yes", "no": "no"},
        phrases={
            "yes": (
                r"famil(?:y|ies) friendly", r"(?:kid|kids|child|children|kid's|kids'|children's) friendly",
                r"family (?:oriented|orientated|style|place|venue|restaurant|pub|coffee shop|establishment|spot"
                r"|atmosphere|environment|setting|dining|eatery|outing|fun)",
                r"(?:for|with) (?:the (?:whole |entire )?|your |all )?(?:family|families|children|kids)",
                r"(?:welcomes?|welcoming|allows?|allowing|accepts?|accepting|caters? (?:to|for)|catering (?:to|for)"
                r"|suitable for|suited for|ideal for|good for|great for|perfect for|appropriate for|open to)"
                r" (?:the (?:whole )?|your |all )?(?:young |small )?(?:family|families|children|kids|child)",
                r"(?:family|families|children|child|kids|kid) welcoming",
                r"(?:children|kids|families) (?:are |is )?(?:welcome|allowed|permitted|accepted)",
                r"bring (?:the|your) (?:kids|children|family)",
            ),
            "no": (
                r"adults? only", r"no (?:children|kids|families)", r"(?:child|children|kid|kids) ?free",
                r"adults? (?:crowd|clientele|audience|customers|venue|establishment)",
                r"(?:children|kids|families) (?:are not|aren't|is not|isn't|not) (?:welcome|allowed|permitted)",
                r"(?:family|child|children|kid|kids) unfriendly",
                r"(?:unfriendly|unsuitable) (?:to|for) (?:families|children|kids)",
            ),
        },
        negated_as={"yes": "no"},
    ),
}

# Slots whose values are names: checked verbatim and blanked out before the other slots are matched.
ENTITY_SLOTS: tuple[str, ...] = ("name", "near")
E2E_SLOTS: tuple[str, ...] = ("name", "eatType", "food", "priceRange", "customer rating", "area", "familyFriendly", "near")

_NEGATION_CUES = frozenset({"not", "no", "none", "never", "non", "without", "nor", "less", "cannot"})
# Words that may stand between a negation and what it negates ("not known to be kid friendly",
# "isn't a very cheap"); any other word ends the negation's reach ("non kid friendly cheap pub" is cheap).
_NEGATION_SCOPE_WORDS = frozenset(
    "a an the be is are was were been being it it's its that this so too very really quite particularly "
    "exactly overly especially necessarily always at all known to considered as of from for in".split()
)
_MAX_NEGATION_DISTANCE = 5
# Stands in for a blanked-out name: matches no phrase, and as a non-scope word it stops negation there.
_ENTITY_PLACEHOLDER = " # "


def _canonical_slot(key: str) -> str:
    """The E2E slot name for ``key`` in any spelling (``price_range``, ``Customer Rating``), else ``key`` itself."""
    squashed = re.sub(r"[\s_-]", "", key.lower())
    for slot in E2E_SLOTS:
        if squashed == slot.replace(" ", "").lower():
            return slot
    return key


def _matchable(text: str) -> str:
    """Lowercase, accent-free text with hyphens and dashes between words turned into spaces."""
    text = normalize(text)
    text = "".join(char for char in unicodedata.normalize("NFKD", text) if not unicodedata.combining(char))
    return re.sub(r"(?<=\w)\s*[-\u2010-\u2015]\s*(?=[\w£$€])", " ", text)


@lru_cache(maxsize=None)
def _class_pattern(slot: str, value_class: str) -> re.Pattern[str]:
    phrases = E2E_LEXICON[slot].phrases[value_class]
    return re.compile(rf"(?<!\w)(?:{'|'.join(phrases)})(?!\w)")


def _is_negated(text: str, start: int, extra_cues: frozenset[str]) -> bool:
    """Whether a negation cue precedes ``start``, separated from it only by scope words, in the same clause."""
    clause = re.split(r"[,.;:!?()]", text[max(0, start - 80) : start])[-1]
    for word in reversed(re.findall(r"[\w'£#]+", clause)[-_MAX_NEGATION_DISTANCE:]):
        if word in _NEGATION_CUES or word in extra_cues or word.endswith("n't"):
            return True
        if word not in _NEGATION_SCOPE_WORDS:
            return False
    return False


def _expressed_classes(text: str, slot: str) -> set[str]:
    lexicon = E2E_LEXICON[slot]
    expressed: set[str] = set()
    for value_class in lexicon.phrases:
        extra_cues = lexicon.extra_negation_cues.get(value_class, frozenset())
        for match in _class_pattern(slot, value_class).finditer(text):
            if not _is_negated(text, match.start(), extra_cues):
                expressed.add(value_class)
            elif value_class in lexicon.negated_as:
                expressed.add(lexicon.negated_as[value_class])
    return expressed


@dataclass(frozen=True)
class _CheckedValue:
    """One unit SER counts: an E2E slot checked through the lexicon, or one verbatim value."""

    key: str
    value: str
    slot: str
    value_class: str | None  # set when the lexicon knows the value, else the value is checked verbatim


def _checked_values(attributes: Mapping[str, str]) -> list[_CheckedValue]:
    units = []
    for key, joined_value in attributes.items():
        slot = _canonical_slot(key)
        lexicon = E2E_LEXICON.get(slot)
        value_class = lexicon.value_classes.get(normalize(joined_value)) if lexicon else None
        if value_class is not None:
            units.append(_CheckedValue(key, joined_value, slot, value_class))
        else:
            units.extend(_CheckedValue(key, value, slot, None) for value in joined_value.split(MULTI_VALUE_SEPARATOR))
    return units


def _value_pattern(value: str) -> re.Pattern[str]:
    return term_pattern(_matchable(value))


def _errors_of(text: str, units: list[_CheckedValue]) -> list[SlotError]:
    matchable = _matchable(text)
    blanked = matchable
    for unit in units:
        if unit.slot in ENTITY_SLOTS:
            blanked = _value_pattern(unit.value).sub(_ENTITY_PLACEHOLDER, blanked)
    errors = []
    for unit in units:
        if unit.value_class is None:
            if _value_pattern(unit.value).search(matchable) is None:
                errors.append(SlotError(unit.key, unit.value, "missing"))
            continue
        expressed = _expressed_classes(blanked, unit.slot)
        if unit.value_class not in expressed:
            errors.append(SlotError(unit.key, unit.value, "contradicted" if expressed else "missing"))
    return errors


def slot_errors(text: str, attributes: str | Mapping[str, str]) -> list[SlotError]:
    """Every input value that ``text`` misses or contradicts, in attribute order (see the module docstring).

    Args:
        text: the generated (or reference) text.
        attributes: a dict or any form :func:`~aigc_studio.content.attributes.parse_attributes` accepts,
            e.g. ``"name[The Eagle], priceRange[cheap]"``. E2E keys may be spelt loosely (``price_range``).

    Returns:
        One :class:`SlotError` per wrong value; empty when the text renders every value.

    Raises:
        AigcError: the attributes do not parse.
    """
    return _errors_of(text, _checked_values(parse_attributes(attributes)))


def slot_error_rate(text: str, attributes: str | Mapping[str, str]) -> float:
    """Share of the input attribute values that ``text`` misses or contradicts.

    Args:
        text: the generated (or reference) text.
        attributes: a dict or any form :func:`~aigc_studio.content.attributes.parse_attributes` accepts.

    Returns:
        SER in [0, 1]: wrong values / values (an E2E slot is one value; ``、``-joined values count one
        each); lower is better.

    Raises:
        AigcError: the attributes do not parse.
    """
    units = _checked_values(parse_attributes(attributes))
    return len(_errors_of(text, units)) / len(units)
