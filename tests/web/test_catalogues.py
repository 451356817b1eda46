"""The page's string catalogues (controller/web/static/i18n): one set of keys in every
language, the same placeholders, and every key the page's code names is there."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "controller" / "web" / "static"
LANGUAGES = ("en", "ru")
PLACEHOLDER = re.compile(r"\{(\w+)\}")
LITERAL_KEY = re.compile(r"""\bt\(\s*'([A-Za-z][\w.-]*)'""")
"""t('some.key', ...) in the page's code: a key written out, not built from a value."""
TRANSLATION_ONLY = ("contraWhy.",)
"""Families a translation has and English needs not: in English the page shows the
daemon's own words (a contraindication's reason), in another language these."""


def catalogue(lang: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((STATIC / "i18n" / f"{lang}.json").read_text("utf-8"))
    return data


def test_every_language_has_the_same_keys() -> None:
    english = set(catalogue("en"))
    for lang in LANGUAGES[1:]:
        keys = set(catalogue(lang))
        assert {k for k in keys - english if not k.startswith(TRANSLATION_ONLY)} == set(), lang
        assert english - keys == set(), f"missing in {lang}"


@pytest.mark.parametrize("lang", LANGUAGES[1:])
def test_a_translation_fills_the_same_placeholders(lang: str) -> None:
    english = catalogue("en")
    for key, text in catalogue(lang).items():
        if key not in english:
            continue  # a TRANSLATION_ONLY key (the test above)
        assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(english[key])), key


def test_every_key_the_code_names_is_in_the_catalogue() -> None:
    english = catalogue("en")
    named: dict[str, str] = {}
    for script in [*sorted((STATIC / "js").glob("*.js")), STATIC / "app.js"]:
        for key in LITERAL_KEY.findall(script.read_text("utf-8")):
            named.setdefault(key, script.name)
    assert len(named) > 50, "the pattern no longer finds the keys"
    missing = {key: where for key, where in named.items() if key not in english}
    assert missing == {}
