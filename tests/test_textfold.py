"""Specification of crm.textfold, the folding applied to both sides of a search."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from crm.textfold import fold, fold_query, tokens

# Text that exercises the Arabic-script paths: Persian and Arabic letters, harakat, tatweel,
# digits, zero-width and bidi characters, presentation forms, plus some Latin.
arabic_script = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0x0600, max_codepoint=0x06FF),
        st.characters(min_codepoint=0xFB50, max_codepoint=0xFDFF),
        st.characters(min_codepoint=0xFE70, max_codepoint=0xFEFF),
        st.sampled_from(" \t\n\u00a0\u200b\u200c\u200d\u200e\u200f\u202b\u202cAaÉé1"),
    )
)
any_text = st.one_of(st.text(), arabic_script)


# --- Arabic forms fold to Persian -------------------------------------------------------------


def test_arabic_yeh_folds_to_persian_yeh() -> None:
    assert fold("علي") == fold("علی") == "علی"


def test_arabic_kaf_folds_to_persian_kaf() -> None:
    assert fold("كيان") == fold("کیان") == "کیان"


def test_alef_maksura_folds_to_persian_yeh() -> None:
    assert fold("مصطفى") == fold("مصطفی")


def test_teh_marbuta_folds_to_heh() -> None:
    assert fold("فاطمة") == fold("فاطمه")


def test_heh_with_hamza_folds_to_heh() -> None:
    assert fold("خانهٔ") == fold("خانۀ") == fold("خانه")


def test_alef_variants_fold_to_plain_alef() -> None:
    assert fold("آرش") == fold("ارش")
    assert fold("أحمد") == fold("احمد")
    assert fold("إبراهيم") == fold("ابراهیم")
    assert fold("ٱلله") == fold("الله")


def test_waw_and_yeh_with_hamza_fold_to_their_base_letter() -> None:
    assert fold("مؤمن") == fold("مومن")
    assert fold("رئیس") == fold("رییس")


def test_presentation_forms_from_pdfs_fold_to_plain_letters() -> None:
    assert fold("ﻋﻠﻲ") == "علی"
    assert fold("ﻻ") == "لا"


# --- marks, tatweel, digits -------------------------------------------------------------------


def test_harakat_are_removed() -> None:
    assert fold("سَلَامٌ") == fold("سلام")
    assert fold("محمّد") == fold("محمد")


def test_tatweel_is_removed() -> None:
    assert fold("خانـــه") == fold("خانه")


def test_persian_and_arabic_digits_fold_to_ascii() -> None:
    assert fold("۰۱۲۳۴۵۶۷۸۹") == "0123456789"
    assert fold("٠١٢٣٤٥٦٧٨٩") == "0123456789"
    assert fold("پلاک ۱۲") == "پلاک 12"


def test_arabic_punctuation_folds_to_ascii() -> None:
    assert fold("سلام، خوبی؟") == "سلام, خوبی?"


# --- zero-width characters and whitespace -----------------------------------------------------


def test_zero_width_non_joiner_folds_to_a_space() -> None:
    assert fold("می‌خواهم") == fold("می خواهم") == "می خواهم"
    assert fold("کتاب‌ها") == "کتاب ها"


def test_half_space_form_does_not_equal_the_joined_form() -> None:
    # Documented decision: ZWNJ is a word boundary, not nothing.
    assert fold("می‌خواهم") != fold("میخواهم")


def test_zero_width_joiner_and_bidi_marks_are_removed() -> None:
    assert fold("ه\u200d") == "ه"
    assert fold("\u200fعلی\u200e") == "علی"
    assert fold("\ufeffali") == "ali"


def test_whitespace_is_collapsed_and_stripped() -> None:
    assert fold("  علی \t\n  رضا\u00a0 ") == "علی رضا"
    assert fold("   ") == ""
    assert fold("") == ""


# --- case and Latin ---------------------------------------------------------------------------


def test_latin_text_is_casefolded() -> None:
    assert fold("Ali REZA") == "ali reza"
    assert fold("Straße") == fold("STRASSE")


def test_latin_accents_are_removed() -> None:
    assert fold("José") == "jose"
    assert fold("ÅNGSTRÖM") == "angstrom"


def test_full_width_characters_fold_to_ascii() -> None:
    assert fold("ＡＢＣ１２３") == "abc123"


# --- queries and tokens -----------------------------------------------------------------------


def test_query_folding_matches_stored_folding() -> None:
    stored = fold("علي رضا كياني‌پور")
    assert fold_query("علی") in stored
    assert fold_query("کیانی") in stored
    assert fold_query("  ALI  ") == "ali"


def test_tokens_split_folded_text_into_words() -> None:
    assert tokens("علي‌رضا  كيان، ۱۲۳") == ["علی", "رضا", "کیان", "123"]
    assert tokens("ali_reza@example.com") == ["ali", "reza", "example", "com"]
    assert tokens("  ") == []


@pytest.mark.parametrize(("a", "b"), [("علي", "علی"), ("كيان", "کیان"), ("ي", "ی"), ("ك", "ک")])
def test_spelling_variants_fold_equal(a: str, b: str) -> None:
    assert fold(a) == fold(b)


# --- properties -------------------------------------------------------------------------------


@given(text=any_text)
@example(text="ℌ")
@example(text="ﷺ")
@example(text="İ")
def test_fold_is_idempotent(text: str) -> None:
    assert fold(fold(text)) == fold(text)


@given(text=any_text)
def test_fold_query_is_the_same_folding(text: str) -> None:
    assert fold_query(text) == fold(text)


@given(text=any_text)
def test_folded_text_is_normalized(text: str) -> None:
    folded = fold(text)
    assert folded == folded.strip()
    assert "  " not in folded
    assert not any(unicodedata.category(ch) in ("Mn", "Me", "Cf") for ch in folded)
    assert not any(ch in folded for ch in "يكىةـ۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩")


@given(a=any_text, b=any_text)
def test_folding_is_compositional_at_spaces(a: str, b: str) -> None:
    # Folding a whole text or its parts gives the same words, so stored text and queries agree.
    assert fold(a + " " + b) == fold(fold(a) + " " + fold(b))


@given(text=any_text)
def test_tokens_are_the_words_of_the_folded_text(text: str) -> None:
    assert tokens(text) == tokens(fold(text))
    assert all(token and token in fold(text) for token in tokens(text))


@given(text=st.text(alphabet=st.characters(max_codepoint=0x7F)))
def test_ascii_fast_path_agrees_with_the_general_path(text: str) -> None:
    # A bidi mark forces the general path and is itself removed.
    assert fold(text) == fold(text + "\u200e")
