"""Personal data and secrets in text: recognisers with validation, not bare regexes.

==========  ===================================================================================
EMAIL       RFC-shaped address around an ``@``; dots, labels and the TLD checked
PHONE       international numbers (``+`` / ``00``) validated by ``phonenumbers``; national formats
            (NANP with its area/exchange rules; a leading trunk ``0``) when formatted or near a
            context word (phone, Telefon, téléphone, teléfono, ...)
CARD        13-19 digits (spaces or dashes kept consistent), a known issuer prefix and the Luhn check
IBAN        country code, the country's length and the ISO 7064 mod-97 check
SSN         US social security numbers in valid ranges (no 000/666/9xx area, 00 group, 0000
            serial, no advertising numbers); a bare 9-digit number only next to "SSN"/"social security"
IP          IPv4 (octets <= 255, not a version number) and IPv6 (``ipaddress`` validates)
SECRET      provider API keys, AWS key ids, GitHub/Slack tokens, JWTs (the audit scrubber's
            shapes), private-key blocks, and values of ``password=`` / ``api_key:`` pairs
DOB         a valid date (numeric or with a month name in en/de/fr/es) after a birth context word
ADDRESS     heuristics: house number + street type (en, fr), street name ending in -straße/-weg/...
            + number (de), Calle/Avenida/Plaza + name + number (es)
NAME        heuristics: capitalised words after an honorific (Mr, Frau, Mme, Sra, ...) or an
            introduction ("my name is", "ich heiße", "je m'appelle", "me llamo", "Name:")
==========  ===================================================================================

What they miss (by design, say so to users): names and addresses without those context cues (a bare
"John Smith" in a sentence, "Am Markt 3"), national phone numbers written without separators or
context, non-US national identifiers, dates of birth without a birth word nearby, secrets in shapes
the scrubber does not know. Detection runs on windows around the anchors a :class:`~.scan.Scan`
found, so it stays fast on long prompts.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import re
from typing import NamedTuple

from ..audit.scrub import _PATTERNS as _SCRUB_PATTERNS
from ..audit.scrub import is_sensitive_name
from .scan import ADDRESS, NAME, Grams, Scan, clusters

TYPES = ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "SECRET", "DOB", "ADDRESS", "NAME")
#: overlapping findings: the earlier type in this list wins
_PRIORITY = {t: i for i, t in enumerate(("SECRET", "CARD", "IBAN", "SSN", "EMAIL", "IP", "DOB", "PHONE", "ADDRESS",
                                         "NAME"))}


class Finding(NamedTuple):
    start: int
    end: int
    type: str


# -- validators (pure, unit-tested) ---------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    total, alt = 0, False
    for ch in reversed(digits):
        d = ord(ch) - 48
        if alt:
            d *= 2
            if d > 9:
                d -= 9
        total += d
        alt = not alt
    return total % 10 == 0


def card_issuer_ok(digits: str) -> bool:
    """A known issuer prefix for the length (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro)."""
    n, p2, p4 = len(digits), int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16
    if p2 in (34, 37):
        return n == 15
    if digits.startswith("6011") or p2 == 65 or 644 <= int(digits[:3]) <= 649:
        return 16 <= n <= 19
    if 3528 <= p4 <= 3589:
        return 16 <= n <= 19
    if p2 in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return 14 <= n <= 19
    if p2 == 62:
        return 16 <= n <= 19
    if p2 in (50, 56, 57, 58, 67, 63):  # Maestro
        return 12 <= n <= 19
    return False


def card_ok(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and card_issuer_ok(digits) and luhn_ok(digits)


#: IBAN length by country (ISO 13616 registry, SEPA and frequent others)
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
    "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18,
    "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23,
    "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def iban_ok(compact: str) -> bool:
    """Country length and the ISO 7064 mod-97-10 check (``compact``: no spaces, upper case)."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    moved = (compact[4:] + compact[:4]).translate(_IBAN_DIGITS)
    return moved.isdigit() and int(moved) % 97 == 1


#: A -> "10" ... Z -> "35" (ISO 13616: letters become two digits)
_IBAN_DIGITS = {ord(c): str(10 + i) for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}


_SSN_AD = {"078051120", "219099999", "123456789"}


def ssn_ok(area: str, group: str, serial: str) -> bool:
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return area + group + serial not in _SSN_AD


def ipv4_ok(s: str) -> bool:
    parts = s.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 and (p == "0" or p[0] != "0")
                                   for p in parts)


def ipv6_ok(s: str) -> bool:
    if s.count(":") < 2:
        return False
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


_phonenumbers = None


def phone_ok(candidate: str, regions: tuple[str, ...] = ("US", "DE", "FR", "ES", "GB")) -> bool:
    """International numbers (+/00) must be valid for their country (``phonenumbers``); a national
    number must be valid in one of ``regions``."""
    global _phonenumbers
    if _phonenumbers is None:
        import phonenumbers

        _phonenumbers = phonenumbers
    pn = _phonenumbers
    s = candidate.strip()
    if s.startswith("00"):
        s = "+" + s[2:]
    if s.startswith("+") and _intl_valid(pn, s):
        return True  # the common case without phonenumbers' parser (~3x faster); anything else is parsed
    try:
        if s.startswith("+"):
            return pn.is_valid_number(pn.parse(s, None))
        for r in regions:
            if pn.is_valid_number(pn.parse(s, r)):
                return True
    except pn.NumberParseException:
        return False
    return False


def _intl_valid(pn, s: str) -> bool:
    """``+<country code><national number>`` with separators only, valid for its country. The same
    verdict as ``phonenumbers.is_valid_number(parse(s))`` (tested on generated numbers), from the
    library's own metadata read once into compiled patterns: its parser and validator cost ~10 µs
    warm and several times that with cold caches. Country calling codes are prefix-free."""
    digits = "".join(c for c in s[1:] if c.isdigit())
    if len(digits) + sum(c in " -./()" for c in s[1:]) != len(s) - 1 or "(0)" in s:
        return False  # letters, extensions, a "(0)" trunk: left to the parser
    for k in (1, 2, 3):
        cc = int(digits[:k])
        regions = pn.COUNTRY_CODE_TO_REGION_CODE.get(cc)
        if regions:
            national = digits[k:]
            if not national or national[0] == "0":
                return False  # leading zeros (Italy) are the parser's
            plans = [_plan(pn, r, cc) for r in regions]
            if len(plans) > 1:  # phonenumbers' region_code_for_number: leading digits, else any valid type
                for plan in plans:
                    if plan is None:
                        continue
                    if plan[0] is not None:
                        if plan[0].match(national):
                            return _valid_in(plan, national)
                    elif _valid_in(plan, national):
                        return True
                return False
            return plans[0] is not None and _valid_in(plans[0], national)
    return False


#: every number type (the commonest first: validity needs any one of them)
_TYPE_DESCS = ("fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost", "voip", "personal_number", "pager",
               "uan", "voicemail")
_Desc = tuple[frozenset[int], "re.Pattern[str]"]
_PLANS: dict[str, tuple[re.Pattern[str] | None, _Desc, tuple[_Desc, ...]] | None] = {}


def _plan(pn, region: str, cc: int):
    """(leading digits, general description, type descriptions) of a region, compiled once."""
    if region in _PLANS:
        return _PLANS[region]
    md = pn.PhoneMetadata.metadata_for_nongeo_region(cc) if region == "001" else \
        pn.PhoneMetadata.metadata_for_region(region)

    def desc(d) -> _Desc | None:
        if d is None or not d.national_number_pattern:
            return None
        return frozenset(d.possible_length or ()), re.compile(d.national_number_pattern)

    plan = None
    if md is not None and (general := desc(md.general_desc)) is not None:
        types = tuple(x for x in (desc(getattr(md, name, None)) for name in _TYPE_DESCS) if x is not None)
        plan = (re.compile(md.leading_digits) if md.leading_digits else None, general, types)
    if region != "001":
        _PLANS[region] = plan
    return plan


def _valid_in(plan, national: str) -> bool:
    """phonenumbers' ``_number_type_helper(...) != UNKNOWN``: the general description and one type."""
    n = len(national)

    def fits(d: _Desc) -> bool:
        return (not d[0] or n in d[0]) and d[1].fullmatch(national) is not None

    return fits(plan[1]) and any(fits(d) for d in plan[2])


# -- recognisers -----------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.%+'-])[\w%+'-]+(?:\.[\w%+'-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                    r"[A-Za-z]{2,24}(?![\w-])")
#: characters of an e-mail local part (the ``_EMAIL`` class ``[\w%+'-]`` and dots), ASCII and Latin-1 letters
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_%+'-.")
_CARD = re.compile(r"(?<![\d-])\d{4}(?P<s>[ -]?)\d{4}(?:(?P=s)\d{1,4}){1,3}(?![\d]|-\d)|(?<![\d-])\d{4}[ -]?\d{6}[ -]?\d{5}(?![\d])")
_IBAN_SEP = " -.\u00a0\u202f"
_NO_IBAN_SEP = dict.fromkeys(map(ord, _IBAN_SEP))
#: an IBAN of each length: country, check digits, then alphanumerics with single separators between
_IBAN_BODY = {k: re.compile(rf"[a-z]{{2}}\d\d(?:[{re.escape(_IBAN_SEP)}]?[a-z0-9]){{{k - 4}}}")
              for k in set(IBAN_LENGTHS.values())}
_SSN = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])|(?<!\d)(\d{3})(\d{2})(\d{4})(?!\d)")
_SSN_CTX = re.compile(r"(?i)\b(?:ssn|social security|soc\.? sec)")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![\w:])")
_VERSION = re.compile(r"(?i)(?:\bv|version|versión|release|build)\s*$")
_PHONE = re.compile(r"(?<![\w+])(?:\+|00)[1-9][\d ().\-/]{5,18}\d(?!\d)|(?<![\w+.])\(?\d[\d ().\-/]{6,16}\d(?![\d])")
_PHONE_CTX = re.compile(
    r"(?i)(?:phone|tel\b|tel\.|telephone|mobile|cell|call|fax|whatsapp|sms|text me|ring|telefon|handy|rufnummer|"
    r"anrufen|ruf|téléphone|portable|appel|numéro|teléfono|telefono|móvil|movil|llam|número|contact)"
)
_NANP = re.compile(r"^(?:\+?1[ .-]?)?\(?([2-9]\d\d)\)?[ .-]?([2-9]\d\d)[ .-]?(\d{4})$")
_MONTHS = (
    r"jan(?:uary|uar|vier)?|feb(?:ruary|ruar)?|févr(?:ier)?|fevrier|mar(?:ch|s)?|märz|maerz|apr(?:il)?|avr(?:il)?"
    r"|may|mai|jun(?:e|i)?|juin|jul(?:y|i)?|juil(?:let)?|aug(?:ust)?|août|aout|sep(?:t(?:ember|embre)?)?"
    r"|oct(?:ober|obre)?|okt(?:ober)?|nov(?:ember|embre)?|dec(?:ember)?|dez(?:ember)?|déc(?:embre)?"
    r"|enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre"
)
_DATE = re.compile(
    r"(?i)(?<!\d)(?:(?P<d1>\d{1,2})[./-](?P<m1>\d{1,2})[./-](?P<y1>(?:19|20)\d\d)"
    r"|(?P<y2>(?:19|20)\d\d)-(?P<m2>\d{1,2})-(?P<d2>\d{1,2})"
    rf"|(?P<d3>\d{{1,2}})(?:\.|er|st|nd|rd|th)?\s+(?:de\s+)?(?P<mn3>{_MONTHS})\.?\s+(?:de\s+)?(?P<y3>(?:19|20)\d\d)"
    rf"|(?P<mn4>{_MONTHS})\.?\s+(?P<d4>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y4>(?:19|20)\d\d))(?!\d)"
)
_DOB_CTX = re.compile(
    r"(?i)(?:born|birth|b-day|dob|d\.o\.b|geboren|geb\.|geburt|né\b|née|naissance|nacid[oa]|nacimiento|cumpleaños)"
)
#: substrings of every _DOB_CTX match (lower case): no birth word near a number, no date scan
_DOB_WORDS = ("born", "birth", "b-day", "dob", "d.o.b", "geb", "né", "naissance", "nacid", "nacimiento", "cumplea")
_DOB_NEAR = re.compile("|".join(map(re.escape, _DOB_WORDS)))
_MONTH_NUM = {}
for _i, _names in enumerate((
    "jan january januar janvier enero", "feb february februar févr février fevrier febrero",
    "mar march märz maerz mars marzo", "apr april avr avril abril", "may mai mayo", "jun june juni juin junio",
    "jul july juli juil juillet julio", "aug august août aout agosto",
    "sep sept september septembre septiembre setiembre", "oct october oktober okt octobre octubre",
    "nov november novembre noviembre", "dec december dez dezember déc décembre diciembre",
), start=1):
    for _n in _names.split():
        _MONTH_NUM[_n] = _i

_UP = "A-ZÄÖÜÀÂÉÈÊËÎÏÔÙÛÇÁÍÓÚÑ"
_LO = "a-zäöüßàâéèêëîïôùûçáíóúñ"
_CAP = rf"[{_UP}][{_LO}'’-]+"
_ADDR_EN = re.compile(
    rf"(?<!\d)\d{{1,5}}[A-Za-z]?,?\s+(?:{_CAP}\s+){{1,4}}(?:Street|St\.?|Avenue|Ave\.?|Road|Rd\.?|Boulevard|Blvd\.?|"
    r"Lane|Ln\.?|Drive|Dr\.?|Court|Ct\.?|Way|Place|Pl\.?|Terrace|Square|Parkway|Highway)(?![\w])"
)
_ADDR_FR = re.compile(
    rf"(?<!\d)\d{{1,4}}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|av\.|boulevard|bd|chemin|place|allée|impasse|quai|route)"
    rf"\s+(?:(?:de|du|des|la|le|l'|d')\s*)*(?:{_CAP}\s?){{1,4}}"
)
_ADDR_DE = re.compile(
    rf"(?<![\w])[{_UP}][{_LO}-]*(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer)\s+\d{{1,4}}\s?[a-z]?(?![\w])"
)
_ADDR_ES = re.compile(
    rf"(?<![\w])(?:Calle|C/|Avenida|Avda\.?|Av\.|Plaza|Pza\.?|Paseo|Camino|Carrer|Ronda)\s+(?:(?:de|del|la|los|las)\s+)*"
    rf"(?:{_CAP}\s?){{1,4}},?\s+(?:n[º°o]\.?\s*)?\d{{1,4}}(?![\d])"
)
_ADDRESS = (_ADDR_EN, _ADDR_FR, _ADDR_DE, _ADDR_ES)
_NAME_AFTER = re.compile(rf"({_CAP}(?:[ \t]+(?:(?:van|von|de|del|la|le|da)[ \t]+)?{_CAP}){{0,2}})")
_CUE = re.compile(
    r"(?<![\w])(?:(?:Mr|Mrs|Ms|Miss|Dr|Prof|Herr|Frau|Mme|Mlle|Monsieur|Madame|Señora?|Sra?|Srta|Doña)\.?[ \t]+"
    r"|(?i:my name is|name is|i am called|call me|mein name ist|ich hei(?:ß|ss)e|je m['’]appelle|mon nom est|"
    r"me llamo|mi nombre es|name|nombre|nom|signed|regards|sincerely|grüßen?|cordialement|saludos|atentamente)"
    r"[ \t]*[:,]?\s*)"
)
_NOT_NAMES = frozenset(
    "The This That These Those There Here What When Where Which Who How Why Yes No Not And But Or If I You We They "
    "He She It My Your Our Their His Her Its A An Sir Madam Team All Customer Customers Friend Friends Everyone "
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday Please Thanks Thank Hello Hi Dear Best Kind Der Die "
    "Das Ein Eine Le La Les Un Une El Los Las Una Mit Bitte Danke Merci Gracias Ich Je Yo Du Tu Sie Vous Usted".split()
)

#: 4-gram stems whose occurrence sends the name / address recognisers to a window
NAME_STEMS = ("mr. ", "mrs.", "mrs ", "ms. ", "miss ", "dr. ", "prof", "herr", "frau", "mme ", "mlle", "monsieur",
              "madame", "señor", "sr. ", "sra.", "srta", "doña", "name", "nombre", "call me", "heiße", "heisse",
              "appelle", "llamo", "signed", "regards", "sincerely", "grüße", "grüßen", "cordialement", "saludos",
              "atentamente", "nom :", "nom:")
ADDRESS_STEMS = ("street", "st. ", "avenue", "ave.", "road", "boulevard", "blvd", "lane", "drive", "court", "place",
                 "terrace", "square", "parkway", "highway", "rue ", "chemin", "allée", "impasse", "quai", "route",
                 "straße", "strasse", "str.", "weg ", "gasse", "platz", "allee", "ring ", "damm", "ufer",
                 "calle", "avda", "plaza", "paseo", "camino", "carrer", "ronda")

GRAMS = Grams({NAME: NAME_STEMS, ADDRESS: ADDRESS_STEMS})


def _overlap_free(found: list[Finding]) -> list[Finding]:
    found.sort(key=lambda f: (f.start, _PRIORITY[f.type], -(f.end - f.start)))
    out: list[Finding] = []
    for f in found:
        if out and f.start < out[-1].end:
            last = out[-1]
            if _PRIORITY[f.type] < _PRIORITY[last.type] or (
                _PRIORITY[f.type] == _PRIORITY[last.type] and f.end - f.start > last.end - last.start
            ):
                out[-1] = f
            continue
        out.append(f)
    return out


def _date_ok(y: int, m: int, d: int) -> bool:
    try:
        _dt.date(y, m, d)
    except ValueError:
        return False
    return 1900 <= y <= _dt.date.today().year


class PiiDetector:
    """Finds PII and secrets in text. ``types``: the types to report (default all of :data:`TYPES`)."""

    def __init__(self, types: tuple[str, ...] | frozenset[str] = TYPES, *, phone_regions: tuple[str, ...] = (
            "US", "DE", "FR", "ES", "GB")) -> None:
        self.types = frozenset(types)
        self.phone_regions = phone_regions

    def detect(self, text: str, scan: Scan | None = None) -> list[Finding]:
        if not text:
            return []
        if scan is None:
            scan = Scan(text, GRAMS)
        t = self.types
        found: list[Finding] = []
        if "EMAIL" in t and "@" in text:
            self._emails(text, scan, found)
        if len(scan.digits):
            self._numeric(text, scan, found)
        if "SECRET" in t:
            self._secrets(text, scan, found)
        if "ADDRESS" in t and ADDRESS in scan.grams:
            self._addresses(text, scan, found)
        if "NAME" in t and NAME in scan.grams:
            self._names(text, scan, found)
        return _overlap_free(found) if len(found) > 1 else found

    # -- families ------------------------------------------------------------------------------------
    def _emails(self, text: str, scan: Scan, found: list[Finding]) -> None:
        last = -1
        for i in scan.find_all("@"):
            if i < last:
                continue
            # the local part's start: back over its characters (at most 64), then one anchored match
            a, floor = i, max(0, i - 64)
            while a > floor and text[a - 1] in _LOCAL_CHARS:
                a -= 1
            while a < i and text[a] == ".":
                a += 1
            m = _EMAIL.match(text, a, min(len(text), i + 256)) if a < i else None
            if m is None:  # an unusual local part: the full search
                m = _EMAIL.search(text, max(0, i - 64), min(len(text), i + 256))
            while m is not None and m.end() <= i:
                m = _EMAIL.search(text, m.end(), min(len(text), i + 256))
            if m is None or m.start() > i:
                continue
            local = m.group().partition("@")[0]
            if ".." in local or local.startswith(".") or local.endswith("."):
                continue
            found.append(Finding(m.start(), m.end(), "EMAIL"))
            last = m.end()

    def _numeric(self, text: str, scan: Scan, found: list[Finding]) -> None:
        t = self.types
        n = len(text)
        ibans = self._ibans(text, scan, found) if "IBAN" in t else []
        # a number the recognisers validate has at least 4 digits ("12 percent" has none) and lies
        # inside one cluster (its separators are 1-3 characters): each recogniser runs only on the
        # clusters with enough digits for it
        for first, last, cnt in scan.number_clusters():
            if any(a <= first and last < b for a, b in ibans):
                continue  # the cluster is an IBAN's digits
            s, e = max(0, first - 40), min(n, last + 6)
            seen: list[tuple[int, int]] = list(ibans)

            def add(a: int, b: int, typ: str, seen: list[tuple[int, int]] = seen) -> None:
                found.append(Finding(a, b, typ))
                seen.append((a, b))

            def taken(a: int, b: int, seen: list[tuple[int, int]] = seen) -> bool:
                return any(a < y and x < b for x, y in seen)

            if "CARD" in t and cnt >= 13:
                for m in _CARD.finditer(text, first, e):
                    d_ = m.group().replace(" ", "").replace("-", "")
                    if not taken(*m.span()) and card_ok(d_):
                        add(m.start(), m.end(), "CARD")
            if "SSN" in t and cnt >= 9:
                for m in _SSN.finditer(text, first, e):
                    if taken(*m.span()):
                        continue
                    if m.group(1):
                        ok = ssn_ok(m.group(1), m.group(3), m.group(4))
                    else:
                        ok = ssn_ok(m.group(5), m.group(6), m.group(7)) and bool(
                            _SSN_CTX.search(text, max(0, m.start() - 30), m.start()))
                    if ok:
                        add(m.start(), m.end(), "SSN")
            if "IP" in t:
                for m in () if "." not in text[first:e] else _IPV4.finditer(text, first, e):
                    if not taken(*m.span()) and ipv4_ok(m.group()) and not _VERSION.search(
                            text, max(0, m.start() - 10), m.start()):
                        add(m.start(), m.end(), "IP")
                if ":" in text[s:e]:
                    for m in _IPV6.finditer(text, max(0, first - 30), e):
                        if not taken(*m.span()) and ipv6_ok(m.group()):
                            add(m.start(), m.end(), "IP")
            if "DOB" in t and _DOB_NEAR.search(scan.low, max(0, s - 48), e):
                for m in _DATE.finditer(text, s, e):
                    if taken(*m.span()) or not _DOB_CTX.search(text, max(0, m.start() - 48), m.start()):
                        continue
                    g = m.groupdict()
                    try:
                        if g["y1"]:
                            y, mo, d = int(g["y1"]), int(g["m1"]), int(g["d1"])
                            if not _date_ok(y, mo, d):
                                mo, d = d, mo  # US order
                        elif g["y2"]:
                            y, mo, d = int(g["y2"]), int(g["m2"]), int(g["d2"])
                        elif g["y3"]:
                            y, mo, d = int(g["y3"]), _MONTH_NUM.get(g["mn3"].lower().rstrip("."), 0), int(g["d3"])
                        else:
                            y, mo, d = int(g["y4"]), _MONTH_NUM.get(g["mn4"].lower().rstrip("."), 0), int(g["d4"])
                    except (TypeError, ValueError):
                        continue
                    if _date_ok(y, mo, d):
                        add(m.start(), m.end(), "DOB")
            if "PHONE" in t and cnt >= 7:
                for m in _PHONE.finditer(text, max(0, first - 3), e):
                    a, b = m.span()
                    if taken(a, b):
                        continue
                    cand = m.group()
                    digits = sum(c.isdigit() for c in cand)
                    if not 7 <= digits <= 15:
                        continue
                    if cand[0] in "+0" and cand[:2] != "0." and (cand[0] == "+" or cand.startswith("00")):
                        ok = phone_ok(cand)
                    elif _NANP.match(cand.strip()):
                        ok = (any(c in cand for c in " -.()") or bool(_PHONE_CTX.search(text, max(0, a - 40), a)))
                    elif cand[0] == "0" and (any(c in cand for c in " -./()") or
                                             _PHONE_CTX.search(text, max(0, a - 40), a)):
                        ok = _PHONE_CTX.search(text, max(0, a - 40), a) is not None or phone_ok(
                            cand, self.phone_regions)
                        ok = ok and phone_ok(cand, self.phone_regions)
                    else:
                        ok = False
                    if ok:
                        add(a, b, "PHONE")

    @staticmethod
    def _ibans(text: str, scan: Scan, found: list[Finding]) -> list[tuple[int, int]]:
        """IBANs start with two letters and two check digits: found where a letter touches a digit
        (:meth:`Scan.touch`), then matched by one pattern per country length (any case; single spaces,
        dashes or dots between groups, however grouped) and checked (boundary, mod-97)."""
        low, n = scan.low, len(text)
        out: list[tuple[int, int]] = []
        end = -1
        for t in scan.touch():  # a letter at t and a digit at t + 1: maybe the country and check digits
            p = t + 1
            if p < end or p < 2 or p + 1 >= n or not low[p].isdigit() or not low[p + 1].isdigit():
                continue
            if not ("a" <= low[p - 2] <= "z" and "a" <= low[p - 1] <= "z"):
                continue
            if p > 2 and (low[p - 3].isalnum() or low[p - 3] == "_"):
                continue
            want = IBAN_LENGTHS.get(low[p - 2 : p].upper())
            if want is None:
                continue
            m = _IBAN_BODY[want].match(low, p - 2)
            if m is None:
                continue
            i = m.end()
            if i < n and (low[i].isalnum() or low[i] == "_"):
                continue
            if iban_ok(m.group().translate(_NO_IBAN_SEP).upper()):
                found.append(Finding(p - 2, i, "IBAN"))
                out.append((p - 2, i))
                end = i
        return out

    def _secrets(self, text: str, scan: Scan, found: list[Finding]) -> None:
        for a, b in scan.runs(16):
            for pattern, _ in _SCRUB_PATTERNS[:9]:  # the audit scrubber's credential shapes
                m = pattern.search(text, max(0, a - 8), b)
                if m is not None:
                    found.append(Finding(m.start(), m.end(), "SECRET"))
                    break
        runs = scan.runs(16)
        # a private-key block has base64 lines (token runs): no run, no block to look for
        i = text.find("-----BEGIN") if runs else -1
        while i >= 0:
            j = text.find("-----END", i)
            k = text.find("-----", j + 8) if j >= 0 else -1
            end = k + 5 if k >= 0 else len(text)
            if "PRIVATE KEY" in text[i : i + 60]:
                found.append(Finding(i, end, "SECRET"))
            i = text.find("-----BEGIN", end)
        for ch in "=:":
            for i in scan.find_all(ch):
                j = i
                while j > 0 and text[j - 1] in "\"' ":
                    j -= 1
                k = j
                while k > 0 and (text[k - 1].isalnum() or text[k - 1] in "_-"):
                    k -= 1
                if j - k < 3 or not is_sensitive_name(text[k:j]):
                    continue
                v = i + 1
                while v < len(text) and text[v] in "\"' ":
                    v += 1
                w = v
                while w < len(text) and not text[w].isspace() and text[w] not in "\"',;&}":
                    w += 1
                if w - v >= 4:
                    found.append(Finding(v, w, "SECRET"))

    def _addresses(self, text: str, scan: Scan, found: list[Finding]) -> None:
        n = len(text)
        for first, last in clusters(scan.grams[ADDRESS], 40):
            s, e = max(0, first - 60), min(n, last + 60)
            for pat in _ADDRESS:
                for m in pat.finditer(text, s, e):
                    found.append(Finding(m.start(), m.end(), "ADDRESS"))

    def _names(self, text: str, scan: Scan, found: list[Finding]) -> None:
        last = -1
        for p in scan.grams[NAME]:
            if p < last:
                continue
            m = _CUE.search(text, max(0, p - 14), min(len(text), p + 24))
            while m is not None and m.end() <= p:
                m = _CUE.search(text, m.end(), min(len(text), p + 24))
            if m is None or m.start() > p + 4:
                continue
            n = _NAME_AFTER.match(text, m.end())
            if n is None:
                continue
            words = n.group(1).split()
            while words and words[-1] in _NOT_NAMES:
                words.pop()
            if not words or words[0] in _NOT_NAMES:
                continue
            a = n.start(1)
            b = text.find(words[-1], a) + len(words[-1])
            found.append(Finding(a, b, "NAME"))
            last = b


__all__ = ["PiiDetector", "Finding", "TYPES", "GRAMS", "luhn_ok", "card_ok", "iban_ok", "ssn_ok", "ipv4_ok",
           "ipv6_ok", "phone_ok"]
