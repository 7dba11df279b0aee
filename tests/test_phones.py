"""Specification of crm.phones, the one phone-number normalizer."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from crm.phones import (
    ParsedPhone,
    PhoneError,
    digits_only,
    format_national,
    lookup_keys,
    normalize,
    parse,
    try_normalize,
)

MOBILE = "+989121234567"
TEHRAN = "+982188776655"

PERSIAN_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
ARABIC_INDIC_DIGITS = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")

# Operator prefixes in use for Iranian mobiles (MCI 091x/099x, Irancell 090x/093x, Rightel 092x).
MOBILE_PREFIXES = [
    *(f"90{d}" for d in "12345"),
    *(f"91{d}" for d in "0123456789"),
    *(f"92{d}" for d in "012"),
    *(f"93{d}" for d in "0123456789"),
    *(f"99{d}" for d in "01234"),
]


# --- accepted forms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "09121234567",
        "+989121234567",
        "00989121234567",
        "989121234567",
        "9121234567",
        "+98 912 123 4567",
        "0912-123-4567",
        "0912.123.4567",
        "(0912) 123 4567",
        "+98 (0) 912 123 4567",
        "(+98) 912 123 4567",
        "  09121234567  ",
        "0912\u00a0123\u00a04567",
    ],
)
def test_usual_iranian_mobile_forms_normalize_to_one_e164(raw: str) -> None:
    assert normalize(raw) == MOBILE


def test_persian_digits_normalize_to_e164() -> None:
    assert normalize("۰۹۱۲۱۲۳۴۵۶۷") == MOBILE
    assert normalize("۰۹۱۲ ۱۲۳ ۴۵۶۷") == MOBILE
    assert normalize("+۹۸۹۱۲۱۲۳۴۵۶۷") == MOBILE


def test_arabic_indic_digits_normalize_to_e164() -> None:
    assert normalize("٠٩١٢١٢٣٤٥٦٧") == MOBILE
    assert normalize("٠٩١٢-١٢٣-٤٥٦٧") == MOBILE


def test_mixed_digit_scripts_normalize_to_e164() -> None:
    assert normalize("۰۹۱۲123٤٥٦٧") == MOBILE


def test_ten_digit_mobile_without_trunk_zero_is_iranian() -> None:
    assert normalize("9121234567") == MOBILE


def test_country_code_without_plus_is_stripped_when_unambiguous() -> None:
    assert normalize("989121234567") == MOBILE
    assert normalize("982188776655") == TEHRAN


@pytest.mark.parametrize(
    "raw", ["02188776655", "021 8877 6655", "(021) 8877-6655", "+98 21 8877 6655", "2188776655"]
)
def test_tehran_landline_normalizes_to_e164(raw: str) -> None:
    assert normalize(raw) == TEHRAN


def test_bidi_marks_and_zero_width_characters_are_ignored() -> None:
    assert normalize("\u200f+98 912 123 4567\u200e") == MOBILE
    assert normalize("\u202b0912\u200c123\u200d4567\u202c") == MOBILE
    assert normalize("\ufeff09121234567") == MOBILE


def test_trailing_plus_from_rtl_rendering_counts_as_leading_plus() -> None:
    assert normalize("989121234567+") == MOBILE
    assert normalize("98 912 123 4567+") == MOBILE


def test_foreign_numbers_keep_their_country_code() -> None:
    assert normalize("+1 415 555 2671") == "+14155552671"
    assert normalize("0014155552671") == "+14155552671"
    assert normalize("+44 20 7946 0958") == "+442079460958"


def test_region_decides_how_national_numbers_are_read() -> None:
    assert normalize("(415) 555-2671", "US") == "+14155552671"
    assert normalize("(415) 555-2671", "us") == "+14155552671"
    assert normalize("+989121234567", "US") == MOBILE


def test_normalize_returns_only_the_e164_without_extension() -> None:
    assert normalize("021 8877 6655 ext 123") == TEHRAN


# --- extensions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "021 8877 6655 ext 123",
        "021 8877 6655 ext. 123",
        "021 8877 6655 Ext:123",
        "021 8877 6655 extension 123",
        "02188776655x123",
        "021 8877 6655 x 123",
        "02188776655#123",
        "021 8877 6655 داخلی 123",
        "021 8877 6655 داخلي 123",
        "۰۲۱-۸۸۷۷۶۶۵۵ داخلی ۱۲۳",
        "02188776655 (داخلی 123)",
        "02188776655, ext 123",
    ],
)
def test_extension_is_returned_separately(raw: str) -> None:
    parsed = parse(raw)
    assert parsed.e164 == TEHRAN
    assert parsed.extension == "123"


def test_number_without_extension_has_none() -> None:
    assert parse("02188776655").extension is None


def test_extension_alone_is_not_a_phone_number() -> None:
    with pytest.raises(PhoneError) as error:
        parse("ext 123")
    assert error.value.reason == "not a phone number"


# --- parse result -----------------------------------------------------------------------------


def test_parse_guesses_mobile_kind() -> None:
    assert parse("09121234567") == ParsedPhone(
        e164=MOBILE, extension=None, kind="mobile", region_code="IR"
    )


def test_parse_guesses_fixed_line_kind() -> None:
    assert parse("02188776655").kind == "fixed_line"


def test_parse_reports_other_kind_when_the_plan_does_not_tell() -> None:
    # North American numbers are "fixed line or mobile": not guessable.
    parsed = parse("+14155552671")
    assert parsed.kind == "other"
    assert parsed.region_code == "US"


def test_parsed_phone_is_immutable() -> None:
    parsed = parse("09121234567")
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.e164 = "+1"  # type: ignore[misc]


# --- rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("\u200f\u200e", "empty"),
        ("abc", "not a phone number"),
        ("call 09121234567", "not a phone number"),
        ("0912+1234567", "not a phone number"),
        ("+", "not a phone number"),
        ("-- ..", "not a phone number"),
        ("tel:+989121234567", "not a phone number"),
        ("1", "too short"),
        ("12", "too short"),
        ("+98", "too short"),
        ("+98021", "too short"),
        ("091212345678", "too long"),
        ("0912 123 4567 / 0935 123 4567", "too long"),
        ("9" * 40, "too long"),
        ("0" + "1" * 200, "too long"),
        ("<unknown>", "caller id withheld"),
        ("unknown", "caller id withheld"),
        ("anonymous", "caller id withheld"),
        ("Anonymous", "caller id withheld"),
        ("<anonymous>", "caller id withheld"),
        ("restricted", "caller id withheld"),
        ("88776655", "local number without area code"),
        ("0912123456", "invalid for region IR"),
        ("1001", "invalid for region IR"),
        ("+1 415 555 0000 0", "too long"),
        ("+999 1234567", "unknown country code"),
    ],
)
def test_garbage_is_rejected_with_a_human_reason(raw: str, reason: str) -> None:
    with pytest.raises(PhoneError) as error:
        normalize(raw)
    assert error.value.reason == reason
    assert str(error.value) == reason
    assert error.value.raw is not None


def test_phone_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a phone number"):
        normalize("abc")


def test_non_string_input_is_a_phone_error() -> None:
    with pytest.raises(PhoneError, match="empty"):
        normalize(None)  # type: ignore[arg-type]
    with pytest.raises(PhoneError, match="not a phone number"):
        normalize(9121234567)  # type: ignore[arg-type]


def test_unknown_region_is_a_phone_error() -> None:
    with pytest.raises(PhoneError, match="unknown region"):
        normalize("09121234567", "XX")


def test_repeated_failures_raise_fresh_errors() -> None:
    # Failures are memoised as reasons, not as exception objects.
    errors = []
    for _ in range(2):
        with pytest.raises(PhoneError) as error:
            normalize("<unknown>")
        errors.append(error.value)
    assert errors[0] is not errors[1]
    assert errors[0].reason == errors[1].reason


# --- conveniences -----------------------------------------------------------------------------


def test_try_normalize_returns_e164_or_none() -> None:
    assert try_normalize("0912 123 4567") == MOBILE
    assert try_normalize("anonymous") is None
    assert try_normalize("") is None


def test_lookup_keys_for_a_caller_id_is_its_e164() -> None:
    assert lookup_keys("9121234567") == [MOBILE]
    assert lookup_keys("+989121234567") == [MOBILE]
    assert lookup_keys("02188776655") == [TEHRAN]


def test_lookup_keys_is_empty_for_withheld_or_garbage_caller_ids() -> None:
    assert lookup_keys("<unknown>") == []
    assert lookup_keys("anonymous") == []
    assert lookup_keys("") == []
    assert lookup_keys("1001") == []


def test_digits_only_converts_persian_and_arabic_digits_and_drops_the_rest() -> None:
    assert digits_only("۰۹۱۲-۱۲۳ ٤٥٦٧") == "09121234567"
    assert digits_only("+98 (912) 123-4567 ext 8") == "9891212345678"
    assert digits_only("abc") == ""
    assert digits_only("") == ""


def test_format_national_for_display() -> None:
    assert format_national(MOBILE) == "0912 123 4567"
    assert format_national(TEHRAN) == "021 8877 6655"


def test_format_national_keeps_foreign_numbers_international() -> None:
    assert format_national("+14155552671") == "+1 415-555-2671"
    assert format_national("+14155552671", "US") == "(415) 555-2671"


def test_format_national_rejects_garbage() -> None:
    with pytest.raises(PhoneError):
        format_national("abc")


# --- properties -------------------------------------------------------------------------------

national_mobiles = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(MOBILE_PREFIXES),
    st.text(alphabet="0123456789", min_size=7, max_size=7),
)


@st.composite
def presentations(draw: st.DrawFn, national: str) -> str:
    """One way a human, spreadsheet or PBX might write the 10-digit national number."""
    prefix = draw(st.sampled_from(["0", "", "98", "+98", "0098", "+98 (0) ", "(+98) "]))
    separators = draw(
        st.lists(
            st.sampled_from(["", "", " ", "-", ".", "\u00a0", "\u200c"]),
            min_size=len(national) - 1,
            max_size=len(national) - 1,
        )
    )
    body = national[0] + "".join(sep + ch for sep, ch in zip(separators, national[1:], strict=True))
    text = prefix + body
    digit_script = draw(st.sampled_from([None, PERSIAN_DIGITS, ARABIC_INDIC_DIGITS]))
    if digit_script is not None:
        text = text.translate(digit_script)
    wrapper = draw(st.sampled_from(["{}", " {} ", "\u200f{}\u200e", "\u202b{}\u202c"]))
    return wrapper.format(text)


@given(national=national_mobiles, data=st.data())
def test_every_presentation_of_a_mobile_normalizes_to_the_same_e164(
    national: str, data: st.DataObject
) -> None:
    raw = data.draw(presentations(national))
    parsed = parse(raw)
    assert parsed.e164 == "+98" + national
    assert parsed.kind == "mobile"
    assert parsed.extension is None


@given(national=national_mobiles)
def test_mobile_forms_agree(national: str) -> None:
    forms = ["0" + national, "+98" + national, "0098" + national, "98" + national, national]
    forms.append(("0" + national).translate(PERSIAN_DIGITS))
    assert {normalize(form) for form in forms} == {"+98" + national}


@given(national=national_mobiles)
def test_format_national_round_trips(national: str) -> None:
    e164 = "+98" + national
    assert normalize(format_national(e164)) == e164


phoneish = st.text(alphabet="0123456789۰۱۲۳۴۵۶۷۸۹٠١٢٣ +-.()#x ext داخلی\u200e\u200c", max_size=30)


@given(raw=st.one_of(phoneish, national_mobiles.map(lambda n: "0" + n)))
@example(raw="+989121234567")
@example(raw="021 8877 6655 ext 123")
def test_normalize_is_idempotent(raw: str) -> None:
    e164 = try_normalize(raw)
    if e164 is not None:
        assert normalize(e164) == e164
        assert normalize(normalize(e164)) == e164


@given(raw=st.one_of(st.text(), phoneish), region=st.sampled_from(["IR", "US", "DE", "ir", "XX"]))
@example(raw="<unknown>", region="IR")
@example(raw="\x00", region="IR")
@example(raw="+" * 5, region="IR")
def test_arbitrary_text_never_raises_anything_but_phone_error(raw: str, region: str) -> None:
    try:
        parsed = parse(raw, region)
    except PhoneError as error:
        assert error.reason
    else:
        assert parsed.e164.startswith("+")
        assert parsed.e164[1:].isdigit()
        assert parsed.kind in ("mobile", "fixed_line", "other")


@given(raw=st.text())
def test_helpers_never_raise_on_arbitrary_text(raw: str) -> None:
    assert try_normalize(raw) is None or try_normalize(raw) == normalize(raw)
    assert lookup_keys(raw) in ([], [try_normalize(raw)])
    assert digits_only(raw).isascii()
    assert digits_only(raw) == "" or digits_only(raw).isdigit()
