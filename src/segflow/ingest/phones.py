"""Phone numbers as Customer Match wants them: E.164, and only valid ones.

:func:`normalise_phone` is the one rule for whether a phone value can be
sent: the import's identifier-quality summary counts with it and the sync
pass hashes what it returns, so the two always agree. It lives under
``ingest`` because the import counts with it and ``activation`` (which hashes
and sends) sits above ``ingest``.

A number is kept only if ``phonenumbers.is_valid_number`` accepts it: a
merely "possible" number (``555-0100``, ``+1 555 0100``) hashes to a value
that can never match anyone. A number that is not valid in the dataset's
default region is tried once more as if it began with ``+``, so a number
written with its country code but no ``+`` (``441134960987`` in a US
dataset) is kept when that reading is valid.

phonenumbers takes 30-130 us a number, so values made of digits and the
separators `` ().-`` (with or without a leading ``+``) are decided without
it, by a re-enactment of its parse (international and national prefixes,
country codes, the default region's own code written without ``+``) and of
its validity check, each built from its metadata on first use. It answers
exactly as phonenumbers does, which the test suite checks on every region's
example numbers in every usual shape; whatever it does not re-enact
(letters, extensions, other characters, a national prefix rule that
rewrites the number, a ``+`` before no country code, a value over 249
characters) goes to phonenumbers itself.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import phonenumbers
from phonenumbers import PhoneMetadata

#: The region assumed for numbers without a country code until a mapping says otherwise.
DEFAULT_REGION = "US"

#: Regions phonenumbers has a numbering plan for: the only possible default regions.
PHONE_REGIONS = frozenset(
    r for regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.values() for r in regions
) - {"001"}


def _desc_pattern(
    desc: phonenumbers.PhoneNumberDesc | None, checked: frozenset[int], length: int | None
) -> str | None:
    """A regex fully matching the numbers of one number type, its possible lengths included.

    None when no number can be of the type: phonenumbers checks a number's
    length against the type's possible lengths (when it lists any) and then
    fully matches the type's pattern. ``checked`` are the only lengths the
    number can have by then (the general description's): a type allowing
    them all needs no length check of its own; nor does any when the
    regex is only ever given numbers of ``length`` digits.
    """
    if desc is None or not desc.national_number_pattern:
        return None
    lengths = [n for n in desc.possible_length if n > 0]
    if desc.possible_length and not lengths:
        return None
    check = ""
    if length is not None:
        if lengths and length not in lengths:
            return None
    elif lengths and not (checked and checked <= set(lengths)):
        alternatives = "|".join(f"[0-9]{{{n}}}\\Z" for n in lengths)
        check = f"(?={alternatives})"
    return f"{check}(?:{desc.national_number_pattern})\\Z"


def _valid_in_region(md: PhoneMetadata, length: int | None) -> str | None:
    """A regex fully matching the national numbers valid in one region.

    As ``_number_type_helper`` decides: the general pattern, then any number
    type's (mobile only when its pattern is not the fixed-line one).
    """
    types = [
        md.premium_rate,
        md.toll_free,
        md.shared_cost,
        md.voip,
        md.personal_number,
        md.pager,
        md.uan,
        md.voicemail,
        md.fixed_line,
    ]
    if not md.same_mobile_and_fixed_line_pattern:
        types.append(md.mobile)
    general = _desc_pattern(md.general_desc, frozenset(), length)
    lengths = frozenset(md.general_desc.possible_length if md.general_desc else ())
    patterns = [p for p in (_desc_pattern(t, lengths, length) for t in types) if p is not None]
    if general is None or not patterns:
        return None
    return f"(?={general})(?:{'|'.join(patterns)})"


def _valid_pattern(country_code: int, length: int | None = None) -> str:
    """A regex fully matching the national numbers phonenumbers calls valid under a country code.

    It is built from phonenumbers' own metadata and follows how
    ``is_valid_number`` decides: a country code of one region is valid in
    it; of several, the first region (in the library's order) that claims
    the number decides, a region with leading digits claiming every number
    that starts with them and a region without claiming the numbers valid in
    it. One regex instead of the library's calls takes a valid US number
    from about 12 us to well under one. With ``length``, it is only ever
    given numbers of that many digits.
    """
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[country_code]
    if len(regions) == 1:
        md = PhoneMetadata.metadata_for_region_or_calling_code(country_code, regions[0])
        valid = None if md is None else _valid_in_region(md, length)
        return valid if valid is not None else "(?!)"
    branches = []
    earlier_leading: list[str] = []
    for region in regions:
        md = PhoneMetadata.metadata_for_region(region)
        if md is None:
            continue
        valid = _valid_in_region(md, length)
        if valid is not None:
            not_claimed = "".join(f"(?!{lead})" for lead in earlier_leading)
            claim = f"(?={md.leading_digits})" if md.leading_digits else ""
            # The claim first: it fails at once for most numbers.
            branches.append(f"{claim}{not_claimed}{valid}")
        if md.leading_digits:
            earlier_leading.append(md.leading_digits)
    return "|".join(f"(?:{b})" for b in branches) or "(?!)"


def _valid_lengths(country_code: int) -> frozenset[int] | None:
    """Lengths a valid number under a country code can have; None for any length.

    Checked before the regex: it answers at once for most invalid numbers,
    where the regex would try every region's branch.
    """
    lengths: set[int] = set()
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[country_code]:
        md = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
        if md is None or md.general_desc is None:
            continue
        if not md.general_desc.possible_length:
            return None
        lengths.update(md.general_desc.possible_length)
    return frozenset(lengths)


_VALID_BY_CODE: dict[int, tuple[frozenset[int] | None, re.Pattern[str]]] = {}


def _valid_for(country_code: int) -> tuple[frozenset[int] | None, re.Pattern[str]]:
    # Built on first use: every country code at import would load every
    # region's metadata (about 0.1 s).
    valid = _VALID_BY_CODE.get(country_code)
    if valid is None:
        pattern = re.compile(_valid_pattern(country_code))
        valid = _VALID_BY_CODE[country_code] = (_valid_lengths(country_code), pattern)
    return valid


class _Plan:
    """What parsing a number of digits needs from one region's metadata."""

    __slots__ = (
        "code",
        "country_code",
        "e164",
        "general",
        "international_prefix",
        "lengths",
        "local_lengths",
        "national_prefix",
        "transforms",
        "valid",
        "valid_lengths",
    )

    def __init__(self, md: PhoneMetadata) -> None:
        self.country_code = md.country_code or 0
        self.code = str(self.country_code)
        idd = md.international_prefix
        self.international_prefix = None if idd is None else re.compile(idd)
        prefix = md.national_prefix_for_parsing
        self.national_prefix = re.compile(prefix) if prefix else None
        self.transforms = bool(md.national_prefix_transform_rule)
        general = md.general_desc or phonenumbers.PhoneNumberDesc()
        self.general = re.compile(general.national_number_pattern or "")
        self.lengths: tuple[int, ...] = tuple(general.possible_length)
        self.local_lengths = frozenset(general.possible_length_local_only)
        self.e164 = f"+{self.code}"
        self.valid_lengths, self.valid = _valid_for(self.country_code)

    def usable(self) -> bool:
        return bool(self.general.pattern) and bool(self.lengths)

    def keeps_stripped(self, length: int) -> bool:
        """Whether ``_test_number_length`` lets parse keep a number stripped of its prefix.

        Parse keeps it unless the length is too short, local only or not a
        possible length; too long is kept.
        """
        lengths = self.lengths
        if length in self.local_lengths:
            return False
        if lengths[0] >= length:
            return lengths[0] == length
        return lengths[-1] < length or length in lengths[1:]

    def too_long(self, length: int) -> bool:
        """Whether ``_test_number_length`` says TOO_LONG."""
        return length not in self.local_lengths and self.lengths[0] < length > self.lengths[-1]

    def strip_national_prefix(self, number: str) -> str | None:
        """``_maybe_strip_national_prefix_carrier_code``'s number; None for a transform rule."""
        if not number or self.national_prefix is None:
            return number
        match = self.national_prefix.match(number)
        if match is None:
            return number
        if self.transforms:
            groups = match.groups()
            if not groups or groups[-1] is not None:
                return None  # the rule rewrites the number: phonenumbers decides
        rest = number[match.end() :]
        if self.general.fullmatch(number) and not self.general.fullmatch(rest):
            return number
        return rest


def _plan(md: PhoneMetadata | None) -> _Plan | None:
    plan = None if md is None else _Plan(md)
    return plan if plan is not None and plan.usable() else None


_PLAN_BY_REGION: dict[str, _Plan | None] = {}
_PLAN_BY_CODE: dict[int, _Plan | None] = {}


def _region_plan(region: str) -> _Plan | None:
    if region not in _PLAN_BY_REGION:
        _PLAN_BY_REGION[region] = _plan(PhoneMetadata.metadata_for_region(region))
    return _PLAN_BY_REGION[region]


def _code_plan(country_code: int) -> _Plan | None:
    """The metadata parse holds once it has a country code: its main region's."""
    if country_code not in _PLAN_BY_CODE:
        main = phonenumbers.region_code_for_country_code(country_code)
        md = PhoneMetadata.metadata_for_region_or_calling_code(country_code, main)
        _PLAN_BY_CODE[country_code] = _plan(md)
    return _PLAN_BY_CODE[country_code]


#: The fast path's answer when phonenumbers must decide (an E.164 number is never empty).
_ASK = ""
_CODES = {str(code): code for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
_DIGITS_ONLY = re.compile(r"(\+?)([0-9]{3,})")


def _finish(number: str, plan: _Plan | None) -> str | None:
    """The end of parse, then validity, given the number after its country code.

    ``plan`` is the metadata parse holds by then: the default region's when
    the number had no country code, else the country code's main region's.
    """
    if plan is None:
        return _ASK
    if len(number) < 2:
        return None
    if plan.national_prefix is not None and plan.national_prefix.match(number):
        stripped = plan.strip_national_prefix(number)
        if stripped is None:
            return _ASK
        if plan.keeps_stripped(len(stripped)):
            number = stripped
    if not 2 <= len(number) <= 17:
        return None
    if plan.valid_lengths is not None and len(number) not in plan.valid_lengths:
        return None
    return plan.e164 + number if plan.valid.match(number) else None


def _international(digits: str, unknown: str | None) -> str | None:
    """Parse of digits after a "+" or an international prefix, then validity.

    ``unknown`` answers digits that start with no country code.
    """
    if len(digits) <= 2:
        return None
    for size in (1, 2, 3):
        # The shortest first, as phonenumbers reads them (none starts with 0).
        code = _CODES.get(digits[:size])
        if code is not None:
            return _finish(digits[size:], _code_plan(code))
    return unknown


def _national(digits: str, region: str) -> str | None:
    """Parse of digits without "+" in a default region, then validity."""
    plan = _region_plan(region)
    if plan is None:
        return _ASK
    if plan.international_prefix is not None:
        idd = plan.international_prefix.match(digits)
        # Not taken for one when a 0 follows: no country code starts with 0.
        if idd is not None and digits[idd.end() : idd.end() + 1] != "0":
            return _international(digits[idd.end() :], None)
    if digits.startswith(plan.code):
        # The default region's country code without "+": taken for one when
        # the rest fits the region's pattern better or the whole is too long.
        rest = plan.strip_national_prefix(digits[len(plan.code) :])
        if rest is None:
            return _ASK
        if (not plan.general.fullmatch(digits) and plan.general.fullmatch(rest)) or plan.too_long(
            len(digits)
        ):
            return _finish(rest, _code_plan(plan.country_code))
    return _finish(digits, plan)


def _decide(compact: str, region: str) -> str | None:
    """:func:`normalise_phone` of a value with its separators removed, or ``_ASK``.

    Decides digits, with or without a leading "+", as phonenumbers' parse
    and validity would, and asks phonenumbers about anything else, about a
    "+" before no country code and where a national prefix rule rewrites
    the number. ``region`` is upper case.
    """
    if not compact:
        return None  # separators alone
    shape = _DIGITS_ONLY.fullmatch(compact)
    if shape is None:
        return _ASK
    digits = shape.group(2)
    if shape.group(1):
        # Read from its country code; a default region of "001" (the
        # non-geographic codes') would leave parse without metadata.
        return _ASK if region == "001" else _international(digits, _ASK)
    if region not in PHONE_REGIONS:
        return _ASK
    first = _national(digits, region)
    if first is None:
        # Tried once more as if written with its "+".
        return _international(digits, None)
    return first


# North American numbers written in the usual ways, without letters or
# extensions: for these phonenumbers' parse and E.164 format reduce to "+1"
# and the ten digits, and its validity check to _NANP_VALID. Other values
# of digits and separators (and a leading "+") go through _decide, a few
# microseconds; everything else through phonenumbers, 30 us and more a
# number. The test suite holds both fast paths to phonenumbers on
# generated numbers.
_SEPARATORS = re.compile(r"[ ().-]")
_NANP_E164 = re.compile(r"\+1([2-9][0-9]{9})")
_NANP_NATIONAL = re.compile(r"[2-9][0-9]{9}")
_NANP_REGIONS = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1])
#: Given ten digits only.
_NANP_VALID = re.compile(_valid_pattern(1, 10))
#: Longer values make phonenumbers give up (``_MAX_INPUT_STRING_LENGTH``, with the "+" it adds).
_MAX_DECIDED_LENGTH = 249


def normalise_phone(raw: str | None, default_region: str) -> str | None:
    """E.164 (``+14155550100``) of a valid number, or None."""
    if raw is None or not raw.strip():
        return None
    if len(raw) > _MAX_DECIDED_LENGTH:
        return normalise_phone_slow(raw, default_region)
    compact = _SEPARATORS.sub("", raw)
    e164 = _NANP_E164.fullmatch(compact)
    if e164 is not None:
        # Written with its "+": no other reading to try.
        return compact if _NANP_VALID.match(e164.group(1)) else None
    region = default_region.upper()
    if _NANP_NATIONAL.fullmatch(compact) and region in _NANP_REGIONS:
        if _NANP_VALID.match(compact):
            return "+1" + compact
    decided = _decide(compact, region)
    if decided != _ASK:
        return decided
    return normalise_phone_slow(raw, default_region)


def normalise_phone_slow(raw: str, default_region: str) -> str | None:
    """:func:`normalise_phone` by phonenumbers alone (the fast path's reference)."""
    number = _valid(raw, default_region.upper())
    if number is None and "+" not in raw:
        # Written with its country code but without the "+".
        number = _valid("+" + raw.strip(), None)
    if number is None:
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _valid(raw: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


# The North American shapes over a whole batch joined with NUL, each value
# between NULs: one regex pass counts (and removes) the valid ones.
_BATCH_VALID = _NANP_VALID.pattern.replace(r"\Z", r"(?=\x00)")
_LITERALS = re.compile(r"[0-9]+(?:\|[0-9]+)*")
_BATCH_PASS: dict[str, re.Pattern[str]] = {}


def _batch_pass(region: str) -> re.Pattern[str]:
    """The batch pass for North American numbers in a default region (built on first use).

    "+1" and ten digits anywhere; in a North American region also the ten
    digits alone and, where the region's international and national
    prefixes are digits (or alternatives of digits) and eleven digits are
    too long for it, "1" and ten digits not starting with either prefix:
    parse reads those as the country code and the national number (see
    ``_national``), so the value is valid exactly when the ten digits are.
    Elsewhere these go through ``_decide``.
    """
    found = _BATCH_PASS.get(region)
    if found is not None:
        return found
    shapes = [r"\+1"]
    plan, main = _region_plan(region), _code_plan(1)
    if region in _NANP_REGIONS and plan is not None and main is not None:
        idd, national = plan.international_prefix, [plan.national_prefix, main.national_prefix]
        prefixes = [p.pattern for p in (idd, *national) if p is not None]
        if plan.code == "1" and plan.too_long(11) and all(map(_LITERALS.fullmatch, prefixes)):
            guard = "" if idd is None else f"(?!{idd.pattern})"
            after = "".join(f"(?!{p.pattern})" for p in national if p is not None)
            shapes.append(f"{guard}1{after}")
        shapes.append("")
    pattern = _BATCH_PASS[region] = re.compile(
        rf"\x00(?:{'|'.join(shapes)})(?=[2-9][0-9]{{9}}\x00)(?:{_BATCH_VALID})"
    )
    return pattern


#: Distinct left-over values one import remembers the answer for.
MAX_REMEMBERED = 100_000
_DROP_SEPARATORS = str.maketrans("", "", " ().-")


def count_valid(
    values: Sequence[str], default_region: str, memo: dict[str, bool] | None = None
) -> int:
    """How many of ``values`` :func:`normalise_phone` keeps.

    The import counts every phone of every batch with this, so it runs the
    North American fast path over the whole batch at once (a regex pass
    instead of a call a value), decides each distinct remaining compact form
    once, and sends each distinct value left undecided through
    :func:`normalise_phone` once, remembering the answer in ``memo`` across
    the batches of one import. The benchmark's 1M phones in a US dataset,
    in batches of 100,000: 5.5 s when 139,000 of them reached phonenumbers,
    0.6 s now that none does.
    """
    if max(map(len, values), default=0) > _MAX_DECIDED_LENGTH:
        # Too long for the fast paths: one at a time.
        fits = [value for value in values if len(value) <= _MAX_DECIDED_LENGTH]
        longer = [value for value in values if len(value) > _MAX_DECIDED_LENGTH]
        alone = sum(1 for value in longer if normalise_phone(value, default_region) is not None)
        return alone + count_valid(fits, default_region, memo)
    joined = "\x00" + "\x00".join(values) + "\x00"
    if joined.count("\x00") != len(values) + 1:  # a NUL inside a value
        return sum(1 for value in values if normalise_phone(value, default_region) is not None)
    region = default_region.upper()
    compact = joined.translate(_DROP_SEPARATORS)
    rest = _batch_pass(region).sub("", compact)
    # Each match took its value and the NUL before it.
    valid = compact.count("\x00") - rest.count("\x00")
    # Whether a value matched or is decided depends on its compact form
    # alone, so the compact forms left over name exactly the values still to
    # check.
    left = Counter(rest.split("\x00")[1:-1])
    asked: set[str] = set()
    for short, times in left.items():
        decided = _decide(short, region)
        if decided == _ASK:
            asked.add(short)
        elif decided is not None:
            valid += times
    if not asked:
        return valid
    seen: dict[str, bool] = {} if memo is None else memo
    for short, raw in zip(compact[1:-1].split("\x00"), values, strict=True):
        if short in asked:
            kept = seen.get(raw)
            if kept is None:
                kept = normalise_phone(raw, default_region) is not None
                if len(seen) < MAX_REMEMBERED:
                    seen[raw] = kept
            valid += kept
    return valid
