"""Money as people in Iran read it: rials stored, toman often spoken, Persian digits in fa.

Amounts are stored in the currency's major unit (IRR has no minor unit in use). One toman
is ten rials; Iranian users expect to see both.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

_FA_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
_NAMES = {
    "fa": {"IRR": "ریال", "IRT": "تومان", "USD": "دلار", "EUR": "یورو", "AED": "درهم"},
    "en": {"IRR": "IRR", "IRT": "toman", "USD": "USD", "EUR": "EUR", "AED": "AED"},
}


def _group(amount: Decimal, places: int, lang: str) -> str:
    q = Decimal(1).scaleb(-places)
    text = f"{amount.quantize(q, rounding=ROUND_HALF_UP):,.{places}f}"
    if lang == "fa":
        # Persian thousands separator ٬ and decimal separator ٫, Persian digits.
        text = text.replace(",", "٬").replace(".", "٫").translate(_FA_DIGITS)
    return text


def format_amount(amount: Decimal, currency: str, lang: str = "fa") -> str:
    """``2500000000 IRR`` → ``۲٬۵۰۰٬۰۰۰٬۰۰۰ ریال (۲۵۰٬۰۰۰٬۰۰۰ تومان)`` in fa."""
    lang = lang if lang in _NAMES else "en"
    names = _NAMES[lang]
    if currency == "IRR":
        rial = _group(amount, 0, lang)
        toman = _group(amount / 10, 0, lang)
        return f"{rial} {names['IRR']} ({toman} {names['IRT']})"
    return f"{_group(amount, 2, lang)} {names.get(currency, currency)}"
