"""Personal-data detection and redaction: emails, phone numbers, Chinese resident IDs, bank cards, IPs, names.

:func:`detect` returns :class:`Entity` spans with offsets into the original text; :func:`redact` replaces
them (``mask``, numbered ``placeholder``, keyed ``hash``); :mod:`aigc_studio.safety.vault` keeps reversible
pseudonyms. Precision comes from validation, not from looser patterns:

* resident ID numbers must pass the ISO 7064 MOD 11-2 check character, carry a real birth date and a
  province code;
* bank card numbers must pass the Luhn check and start like a card scheme (Visa, Mastercard, UnionPay...);
* IP addresses must parse with :mod:`ipaddress`;
* numbers that follow an order, tracking, invoice or version cue (``order no.``, ``运单号``) are not flagged,
  nor are digits glued to letters (``SF1234567890123``) or to more digits;
* names are only taken where a cue says a name follows or precedes (``Mr.``, ``Dear``, ``姓名：``,
  ``先生``), and Chinese names must start with a surname from :data:`CHINESE_SURNAMES`.

Text is width-folded first (:func:`~aigc_studio.safety.normalize.fold_width`), so full-width digits and
``＠`` are found too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from aigc_studio.errors import AigcError
from aigc_studio.fileio import read_jsonl, write_jsonl
from aigc_studio.safety.moderation import DetectionScore
from aigc_studio.safety.normalize import NormalizedText, fold_width

PII_TYPES: tuple[str, ...] = ("EMAIL", "PHONE", "CN_ID", "BANK_CARD", "IP_ADDRESS", "PERSON")
# When two candidates of equal length overlap, the more specific (checksum-backed) type wins.
_SPECIFICITY = {"CN_ID": 0, "BANK_CARD": 1, "EMAIL": 2, "IP_ADDRESS": 3, "PHONE": 4, "PERSON": 5}

RedactionMode = Literal["mask", "placeholder", "hash"]
REDACTION_MODES: tuple[str, ...] = ("mask", "placeholder", "hash")


@dataclass(frozen=True)
class Entity:
    """One piece of personal data: its type and ``[start, end)`` offsets into the original text."""

    type: str
    start: int
    end: int
    text: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# ----------------------------------------------------------------------------------------------------------
# checksums


_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK_CHARS = "10X98765432"
# First two digits of a mainland resident ID: the province-level division (GB/T 2260).
_CN_PROVINCE_CODES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82".split()
)


def cn_id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character (``0``-``9`` or ``X``) of a resident ID's first 17 digits."""
    total = sum(int(digit) * weight for digit, weight in zip(first17, _CN_ID_WEIGHTS))
    return _CN_ID_CHECK_CHARS[total % 11]


def is_valid_cn_id(number: str, today: dt.date | None = None) -> bool:
    """Whether ``number`` (18 characters, separators removed) is a plausible mainland resident ID.

    It must have a known province code, a real birth date between 1900 and ``today``, and the right check
    character.
    """
    if len(number) != 18 or not number[:17].isdigit() or number[17] not in "0123456789Xx":
        return False
    if number[:2] not in _CN_PROVINCE_CODES or not _plausible_birth_date(number[6:14], today):
        return False
    return cn_id_check_char(number[:17]) == number[17].upper()


def _plausible_birth_date(yyyymmdd: str, today: dt.date | None = None) -> bool:
    try:
        born = dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return dt.date(1900, 1, 1) <= born <= (today or dt.date.today())


def luhn_check_digit(partial: str) -> str:
    """The Luhn check digit to append to ``partial`` (digits only)."""
    total = 0
    for position, char in enumerate(reversed(partial)):
        digit = int(char)
        if position % 2 == 0:  # these digits are doubled once the check digit is appended
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    """Whether the digit string ``number`` passes the Luhn (mod 10) check."""
    return len(number) > 1 and number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


# Issuer prefixes: Visa 4, Mastercard 51-55 and 2221-2720, Amex 34/37, Diners 30/36/38, JCB 35,
# Discover/RuPay/UnionPay 6 (UnionPay 62), Maestro 50/56-58.
_CARD_PREFIX = re.compile(r"4|5[0-8]|2(?:22[1-9]|2[3-9]|[3-6]|7[01]|720)|3[0-8]|6")
# How people group card digits: none, fours (the last group may be shorter), Amex 4-6-5, Diners 4-6-4.
_CARD_GROUPINGS = re.compile(
    r"\d{13,19}"
    r"|\d{4}(?P<sep>[ -])\d{4}(?:(?P=sep)\d{4}){1,2}(?:(?P=sep)\d{1,4})?"
    r"|\d{4}(?P<amex>[ -])\d{6}(?P=amex)\d{4,5}"
)


# ----------------------------------------------------------------------------------------------------------
# candidate patterns (run on width-folded text)

# Numbers are not personal data when glued to letters or to more digits ("SF1234567890123", "12 345").
_DIGITS_BEFORE = r"(?<![0-9A-Za-z+])(?<![0-9][ .\-])"
_DIGITS_AFTER = r"(?![0-9A-Za-z])(?![ .\-][0-9])"

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+"
    r"(?P<tld>[A-Za-z]{2,24})(?![A-Za-z0-9\-])"
)
# Asset names like icon@2x.png look like addresses; these endings are file types, not domains.
_FILE_EXTENSIONS = frozenset("png jpg jpeg gif svg webp bmp pdf js css ts json txt html".split())

_PHONE_PATTERNS = (
    # mainland mobile: 1[3-9]x + 8 digits, optional +86 / 0086 / (+86), spaces or dashes as 3-4-4
    r"(?:(?:\+|00)86[ \-]?|\(\+?86\)[ \-]?)?1[3-9]\d(?:[ \-]?\d{4}){2}",
    # mainland landline with area code: 010 / 02x / 0xxx, then 7-8 digits: 010-12345678, (0755) 1234567
    r"(?:\((?:010|02\d|0[3-9]\d{2})\)[ \-]?|(?:010|02\d|0[3-9]\d{2})[ \-]?)[1-9]\d{6,7}",
    # international E.164 with optional grouping: +44 20 7946 0958, +1 (415) 555-2671
    r"\+[1-9][0-9 ().\-]{6,22}[0-9]",
    # North American national: (415) 555-2671, 415-555-2671, 415.555.2671, 415 555 2671
    r"\([2-9]\d{2}\) ?[2-9]\d{2}[ .\-]\d{4}|[2-9]\d{2}(?P<nanp>[ .\-])[2-9]\d{2}(?P=nanp)\d{4}",
    # trunk-prefixed national groups (UK and others): 020 7946 0958, 0161 496 0000, 07700 900123
    r"0\d{2,4}(?P<trunk>[ \-])\d{3,6}(?:(?P=trunk)\d{3,4})?",
)
_PHONE = re.compile(_DIGITS_BEFORE + "(?:" + "|".join(_PHONE_PATTERNS) + ")" + _DIGITS_AFTER)

_CN_ID = re.compile(_DIGITS_BEFORE + r"\d{6}[ \-]?\d{8}[ \-]?\d{3}[0-9Xx]" + _DIGITS_AFTER)
_BANK_CARD = re.compile(_DIGITS_BEFORE + r"\d(?:[ \-]?\d){12,18}" + _DIGITS_AFTER)
_IPV4 = re.compile(r"(?<![0-9A-Za-z.])(?:\d{1,3}\.){3}\d{1,3}(?![0-9A-Za-z]|\.[0-9])")
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:|(?:\d{1,3}\.){3}\d{1,3})?"
    r"(?![0-9A-Za-z:]|\.[0-9])"
)

# Numbers right after these words are order, tracking, invoice or product numbers, not personal data.
_NON_PERSONAL_CUE = re.compile(
    r"(?<![A-Za-z])(?:order|tracking|invoice|waybill|parcel|shipment|sku|ref(?:erence)?|transaction|serial|"
    r"model|coupon|voucher|version|ver\.?|build|barcode|ean|isbn|"
    r"订单|单号|运单|快递|物流|发票|流水|交易|货号|批号|型号|序列号|券码|兑换码|条形码|条码|版本)"
    r"\s*(?:no\.?|number|num|id|code|#|号码?|编号)?\s*[:：#]?\s*$",
    re.IGNORECASE,
)
_CUE_WINDOW = 24


# People's names. English: a title, a greeting or a self-introduction before capitalised words.
_NAME_TOKEN = r"[A-Z](?:[a-z]+(?:[A-Z][a-z]+)?|'[A-Z][a-z]+)(?:-[A-Z][a-z]+)?"
_NOT_NAME_WORDS = frozenset(
    """The And Or Of In On At To For From With By I We You He She It They Our Your His Her Their My Thanks
    Thank Please Regards Best Customer Customers Sir Sirs Madam Team All Everyone Friend Friends Valued
    Member Members Guest Guests User Users Shopper Shoppers Colleague Colleagues There Folks Reader Readers
    Client Clients Partner Partners Manager Support Hiring Parents Students Sales Admin World Mom Dad
    Mr Mrs Ms Dr Prof Miss Owner Buyer Seller Subscriber Subscribers Applicant Candidate""".split()
)
_NAME_WORD = r"(?!(?:" + "|".join(sorted(_NOT_NAME_WORDS)) + r")\b)" + _NAME_TOKEN
_NAME = rf"{_NAME_WORD}(?:[ ]{_NAME_WORD}){{0,2}}"
_ENGLISH_NAME_CUES = (
    re.compile(rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Mister)\.?[ ]+(?P<name>{_NAME})\b"),
    re.compile(rf"\b(?:Dear|Hi|Hello|Hey)[ ]+(?P<name>{_NAME})(?=[ ]*[,:\n])"),
    re.compile(rf"\b(?:[Mm]y name is|[Nn]ame[ ]*:)[ ]*(?P<name>{_NAME})\b"),
)

# Chinese: a surname (single or compound) plus one or two given-name characters, next to a cue.
CHINESE_SURNAMES: tuple[str, ...] = tuple(
    """欧阳 司马 诸葛 上官 东方 皇甫 令狐 慕容 夏侯 尉迟 公孙 长孙 宇文 司徒 端木 南宫 独孤 轩辕 歐陽 諸葛
    王 李 张 刘 陈 杨 黄 赵 吴 周 徐 孙 马 朱 胡 郭 何 高 林 罗 郑 梁 谢 宋 唐 许 韩 冯 邓 曹 彭 曾 肖 田 董
    袁 潘 于 蒋 蔡 余 杜 叶 程 苏 魏 吕 丁 任 沈 姚 卢 姜 崔 钟 谭 陆 汪 范 金 石 廖 贾 夏 韦 付 方 白 邹 孟
    熊 秦 邱 江 尹 薛 闫 段 雷 侯 龙 史 陶 黎 贺 顾 毛 郝 龚 邵 万 钱 严 覃 武 戴 莫 孔 向 汤 常 温 康 施 文
    牛 樊 葛 邢 安 齐 易 乔 伍 庞 颜 倪 庄 聂 章 鲁 岳 翟 殷 詹 申 欧 耿 关 兰 焦 俞 左 柳 甘 祝 包 宁 尚 符
    舒 阮 柯 纪 梅 童 凌 毕 单 季 裴 霍 涂 成 苗 谷 盛 曲 翁 冉 骆 蓝 路 游 辛 靳 管 柴 蒙 鲍 华 喻 祁 蒲
    房 滕 屈 饶 解 牟 艾 尤 阳 时 穆 农 司 卓 古 吉 缪 简 车 项 连 芦 麦 褚 娄 窦 戚 岑 景 党 宫 费 卜 冷
    晏 席 卫 米 柏 宗 瞿 桂 全 佟 应 臧 闵 苟 邬 边 卞 姬 师 仇 栾 隋 商 刁 沙 荣 巫 寇 桑 郎 甄 丛 仲
    虞 敖 巩 明 佘 池 查 麻 苑 迟 邝 陳 劉 張 黃 趙 吳 孫 馬 鄭 謝 許 韓 馮 鄧 蕭 潘 蔣 葉 蘇 呂 盧 鍾 譚
    陸 賈 韋 鄒 閻 龍 賀 顧 龔 萬 錢 嚴 湯 楊 羅 歐""".split()
)
# Characters that end a name rather than continue it: particles, pronouns, common verbs and the first
# characters of honorifics and contact words.
_NAME_STOP_CHARS = (
    "的了在是和与及或对向给被把将从跟请问谢您你我他她们这那各每该本贵也都就还又再已曾正要想会能可说称反表"
    "来去到于为以因所而且但并等之其此个位名号先女士生姐总经理电话手机邮箱地址证卡身份订单购买下申投诉咨询"
    "退换收件货寄联系客户用尊敬亲爱"
)
_GIVEN_CHAR = rf"(?:(?![{_NAME_STOP_CHARS}])[\u4e00-\u9fff])"
_SURNAME = "(?:" + "|".join(sorted(CHINESE_SURNAMES, key=len, reverse=True)) + ")"
_HONORIFIC = "先生|女士|小姐"
_CHINESE_NAME_AFTER_CUE = re.compile(
    rf"(?:姓名|名字|我叫|本人|客户|用户|联系人|收货人|收件人|寄件人|持卡人|申请人|患者|会员|尊敬的|亲爱的)[ ]*[:：]?[ ]*"
    rf"(?P<name>{_SURNAME}{_GIVEN_CHAR}{{1,2}})(?=$|[^\u4e00-\u9fff]|[{_NAME_STOP_CHARS}]|{_HONORIFIC})"
)
_CHINESE_NAME_BEFORE_HONORIFIC = re.compile(rf"{_SURNAME}{_GIVEN_CHAR}{{0,2}}")
_HONORIFIC_AT = re.compile(_HONORIFIC)
# Words whose last character is also a surname; a name does not start inside them ("感谢马云先生").
_WORDS_ENDING_IN_SURNAME = frozenset(
    "感谢 多谢 谢谢 致谢 答谢 关于 对于 由于 属于 位于 等于 至于 面向 转向 一向 方向 同时 及时 按时 准时 随时".split()
)


# ----------------------------------------------------------------------------------------------------------
# detection


@dataclass(frozen=True)
class _Candidate:
    type: str
    start: int  # offsets in the folded text
    end: int


def _follows_non_personal_cue(text: str, start: int) -> bool:
    return _NON_PERSONAL_CUE.search(text, max(0, start - _CUE_WINDOW), start) is not None


def _emails(text: str) -> Iterator[_Candidate]:
    for match in _EMAIL.finditer(text):
        if match.group("tld").lower() not in _FILE_EXTENSIONS:
            yield _Candidate("EMAIL", match.start(), match.end())


def _phones(text: str) -> Iterator[_Candidate]:
    for match in _PHONE.finditer(text):
        candidate = match.group()
        digits = re.sub(r"\D", "", candidate)
        # E.164 allows 8-15 digits after the +; every national format here has at least 10.
        if not (8 if candidate.startswith("+") else 10) <= len(digits) <= 15 or not _balanced_parentheses(candidate):
            continue
        if "  " in candidate or _follows_non_personal_cue(text, match.start()):
            continue
        yield _Candidate("PHONE", match.start(), match.end())


def _balanced_parentheses(candidate: str) -> bool:
    depth = 0
    for char in candidate:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth not in (0, 1):
            return False
    return depth == 0


def _cn_ids(text: str) -> Iterator[_Candidate]:
    for match in _CN_ID.finditer(text):
        number = re.sub(r"[ \-]", "", match.group())
        if is_valid_cn_id(number) and not _follows_non_personal_cue(text, match.start()):
            yield _Candidate("CN_ID", match.start(), match.end())


def _looks_like_cn_id(digits: str) -> bool:
    # An 18-digit number with a province code and a birth date is a (mistyped) ID, not a card.
    return len(digits) == 18 and digits[:2] in _CN_PROVINCE_CODES and _plausible_birth_date(digits[6:14])


def _bank_cards(text: str) -> Iterator[_Candidate]:
    for match in _BANK_CARD.finditer(text):
        candidate = match.group()
        digits = re.sub(r"[ \-]", "", candidate)
        if not (13 <= len(digits) <= 19 and _CARD_GROUPINGS.fullmatch(candidate) and _CARD_PREFIX.match(digits)):
            continue
        if not luhn_valid(digits) or _looks_like_cn_id(digits) or _follows_non_personal_cue(text, match.start()):
            continue
        yield _Candidate("BANK_CARD", match.start(), match.end())


def _ip_addresses(text: str) -> Iterator[_Candidate]:
    for pattern, parse in ((_IPV4, ipaddress.IPv4Address), (_IPV6, ipaddress.IPv6Address)):
        for match in pattern.finditer(text):
            candidate = match.group()
            if not any(char.isalnum() for char in candidate):
                continue
            try:
                parse(candidate)
            except ValueError:
                continue
            if not _follows_non_personal_cue(text, match.start()):
                yield _Candidate("IP_ADDRESS", match.start(), match.end())


def _names(text: str) -> Iterator[_Candidate]:
    for pattern in _ENGLISH_NAME_CUES:
        for match in pattern.finditer(text):
            yield _Candidate("PERSON", match.start("name"), match.end("name"))
    for match in _CHINESE_NAME_AFTER_CUE.finditer(text):
        yield _Candidate("PERSON", match.start("name"), match.end("name"))
    for honorific in _HONORIFIC_AT.finditer(text):
        end = honorific.start()
        # Names that end at the honorific and start with a surname, longest first. A longer one is passed
        # over when it starts inside a word (感谢|马云) or with a function word that is also a surname
        # (李先生和|王女士, 关于|张先生) and a shorter one exists.
        valid = [
            start
            for start in range(max(0, end - 4), end)
            if _CHINESE_NAME_BEFORE_HONORIFIC.fullmatch(text, start, end)
            and not (start > 0 and text[start - 1 : start + 1] in _WORDS_ENDING_IN_SURNAME)
        ]
        preferred = [start for start in valid if text[start] not in _NAME_STOP_CHARS] or valid
        if preferred:
            yield _Candidate("PERSON", preferred[0], end)


_DETECTORS: dict[str, Callable[[str], Iterator[_Candidate]]] = {
    "EMAIL": _emails,
    "PHONE": _phones,
    "CN_ID": _cn_ids,
    "BANK_CARD": _bank_cards,
    "IP_ADDRESS": _ip_addresses,
    "PERSON": _names,
}


def _resolve_overlaps(candidates: Iterable[_Candidate]) -> list[_Candidate]:
    # Longest first, then the most specific type: a card number is not also three phone numbers.
    ranked = sorted(set(candidates), key=lambda c: (-(c.end - c.start), _SPECIFICITY[c.type], c.start))
    kept: list[_Candidate] = []
    for candidate in ranked:
        if all(candidate.end <= other.start or other.end <= candidate.start for other in kept):
            kept.append(candidate)
    return sorted(kept, key=lambda c: c.start)


def detect(text: str, types: Sequence[str] | None = None) -> list[Entity]:
    """Find personal data in ``text``.

    Args:
        text: any text, Chinese or English.
        types: the entity types to look for (default: all of :data:`PII_TYPES`).

    Returns:
        Non-overlapping entities in text order, offsets into ``text``; where candidates overlap, the longest
        wins, then the most specific type (resident ID, bank card, email, IP, phone, name).

    Raises:
        AigcError: an unknown type is asked for.
    """
    wanted = PII_TYPES if types is None else tuple(types)
    for entity_type in wanted:
        if entity_type not in _DETECTORS:
            raise AigcError(f"unknown personal-data type {entity_type!r}; use some of: {', '.join(PII_TYPES)}", param="types")
    folded: NormalizedText = fold_width(text)
    candidates = [candidate for entity_type in wanted for candidate in _DETECTORS[entity_type](folded.text)]
    entities = []
    for candidate in _resolve_overlaps(candidates):
        start, end = folded.original_span(candidate.start, candidate.end)
        entities.append(Entity(candidate.type, start, end, text[start:end]))
    return entities


# ----------------------------------------------------------------------------------------------------------
# redaction


def canonical_value(entity: Entity) -> str:
    """The value an entity stands for, so that different spellings of one value redact alike.

    Phone, ID and card numbers keep their digits (a mainland mobile drops its +86), emails are lower-cased,
    IP addresses are written the standard way, names are kept as written (width-folded).
    """
    value = fold_width(entity.text).text
    if entity.type == "PHONE":
        digits = re.sub(r"\D", "", value)
        mainland = re.fullmatch(r"(?:00)?86(1[3-9]\d{9})", digits)
        return mainland.group(1) if mainland else digits
    if entity.type in ("BANK_CARD", "CN_ID"):
        return re.sub(r"[ \-]", "", value).upper()
    if entity.type == "EMAIL":
        return value.lower()
    if entity.type == "IP_ADDRESS":
        return str(ipaddress.ip_address(value))
    return value


def keyed_hash(entity: Entity, key: bytes | str, length: int = 12) -> str:
    """A short HMAC-SHA256 of the entity's type and canonical value: equal values give equal hashes,
    and without the key nobody can test a guess."""
    key_bytes = key.encode("utf-8") if isinstance(key, str) else key
    message = f"{entity.type}:{canonical_value(entity)}".encode("utf-8")
    return hmac.new(key_bytes, message, hashlib.sha256).hexdigest()[:length]


def replace_entities(text: str, entities: Sequence[Entity], replacement: Callable[[Entity], str]) -> str:
    """``text`` with each entity's span replaced by ``replacement(entity)`` (entities must not overlap)."""
    pieces, position = [], 0
    for entity in sorted(entities, key=lambda e: e.start):
        pieces.append(text[position : entity.start])
        pieces.append(replacement(entity))
        position = entity.end
    pieces.append(text[position:])
    return "".join(pieces)


def redact(
    text: str,
    mode: RedactionMode = "placeholder",
    *,
    entities: Sequence[Entity] | None = None,
    hash_key: bytes | str | None = None,
    keep_last_card_digits: int = 0,
) -> str:
    """Replace the personal data in ``text``.

    Args:
        text: the text.
        mode: ``"mask"`` (``****``), ``"placeholder"`` (``<PHONE_1>``, numbered per distinct value and type
            in order of appearance) or ``"hash"`` (``<PHONE:3fa9c1d2e4b5>``, HMAC-SHA256 with ``hash_key``).
        entities: what to replace (default: :func:`detect` on ``text``).
        hash_key: the secret for ``"hash"`` mode.
        keep_last_card_digits: in ``"mask"`` mode, show this many last digits of bank cards (``****1234``).

    Returns:
        The redacted text.

    Raises:
        AigcError: an unknown mode, or ``"hash"`` mode without a key.
    """
    if mode not in REDACTION_MODES:
        raise AigcError(f"unknown redaction mode {mode!r}; use one of: {', '.join(REDACTION_MODES)}", param="mode")
    if mode == "hash" and not hash_key:
        raise AigcError("hash mode needs a secret key; pass hash_key (CLI: --hash-key or AIGC_PII_HASH_KEY)", param="hash_key")
    if not 0 <= keep_last_card_digits <= 4:
        raise AigcError(f"keep_last_card_digits must be 0..4, got {keep_last_card_digits}", param="keep_last_card_digits")
    entities = detect(text) if entities is None else entities
    return replace_entities(text, entities, _replacer(mode, hash_key, keep_last_card_digits))


def _replacer(mode: str, hash_key: bytes | str | None, keep_last_card_digits: int) -> Callable[[Entity], str]:
    if mode == "mask":
        return lambda entity: "****" + (
            canonical_value(entity)[-keep_last_card_digits:] if entity.type == "BANK_CARD" and keep_last_card_digits else ""
        )
    if mode == "hash":
        return lambda entity: f"<{entity.type}:{keyed_hash(entity, hash_key)}>"
    numbers: dict[tuple[str, str], int] = {}  # (type, value) -> its number among values of that type

    def placeholder(entity: Entity) -> str:
        key = (entity.type, canonical_value(entity))
        if key not in numbers:
            numbers[key] = 1 + sum(1 for known_type, _ in numbers if known_type == entity.type)
        return f"<{entity.type}_{numbers[key]}>"

    return placeholder


# ----------------------------------------------------------------------------------------------------------
# files and evaluation


@dataclass(frozen=True)
class PiiFileReport:
    """Counts from :func:`redact_jsonl`: rows read, rows with personal data, entities per type."""

    rows: int
    rows_with_entities: int
    entities_per_type: dict[str, int]
    output: Path


def redact_jsonl(
    input_path: str | Path,
    output_path: str | Path,
    mode: str = "placeholder",
    *,
    hash_key: bytes | str | None = None,
) -> PiiFileReport:
    """Detect and redact personal data in every ``{"id", "text"}`` line of a JSON Lines file.

    Each output line is the input object plus ``"entities"`` (``{"type", "start", "end", "text"}``) and
    ``"redacted"`` (the text redacted with ``mode``). The output is written atomically.

    Raises:
        AigcError: the input is missing or malformed, a line has no string ``"text"`` (with its line
            number), or the mode is unknown or lacks its key.
    """
    if mode not in REDACTION_MODES:
        raise AigcError(f"unknown redaction mode {mode!r}; use one of: {', '.join(REDACTION_MODES)}", param="mode")
    rows, per_type, with_entities = [], dict.fromkeys(PII_TYPES, 0), 0
    for line_number, row in read_jsonl(input_path):
        text = row.get("text")
        if not isinstance(text, str):
            raise AigcError(
                f'{input_path}:{line_number}: no string field "text"; each line must look like {{"id": 1, "text": "..."}}'
            )
        entities = detect(text)
        for entity in entities:
            per_type[entity.type] += 1
        with_entities += bool(entities)
        redacted = redact(text, mode, entities=entities, hash_key=hash_key)
        rows.append({**row, "entities": [entity.to_dict() for entity in entities], "redacted": redacted})
    output = write_jsonl(output_path, rows)
    return PiiFileReport(rows=len(rows), rows_with_entities=with_entities, entities_per_type=per_type, output=output)


def evaluate(examples: Iterable[tuple[str, Iterable[Entity]]]) -> dict[str, DetectionScore]:
    """Per-type precision and recall of :func:`detect`, counting exact ``(type, start, end)`` spans.

    Args:
        examples: ``(text, expected entities)`` pairs; texts without personal data have no entities.

    Returns:
        ``{type: DetectionScore}`` for every type in :data:`PII_TYPES`.
    """
    counts = {entity_type: [0, 0, 0] for entity_type in PII_TYPES}
    for text, expected in examples:
        gold = {(e.type, e.start, e.end) for e in expected}
        predicted = {(e.type, e.start, e.end) for e in detect(text)}
        for entity_type, _, _ in predicted & gold:
            counts[entity_type][0] += 1
        for entity_type, _, _ in predicted - gold:
            counts[entity_type][1] += 1
        for entity_type, _, _ in gold - predicted:
            counts[entity_type][2] += 1
    return {entity_type: DetectionScore(*values) for entity_type, values in counts.items()}
