"""Captions adapted to each service's length rules, always keeping the link to the medium.

Each service counts differently:

- Mastodon counts grapheme clusters, every ``http(s)://`` URL as 23 (its
  ``characters_reserved_per_url``), up to 500 by default; an instance may allow more
  (``configuration.statuses.max_characters``), so the limit is per linked account.
- X counts with twitter-text's v3 weights: code points in U+0000-U+10FF, U+2000-U+200D,
  U+2010-U+201F and U+2032-U+2037 weigh 1, everything else 2 (CJK, most emoji; an emoji
  sequence such as a flag or a skin tone counts once, as 2), any URL (even a bare
  ``example.com``) is wrapped in t.co and counts 23; at most 280.
- Facebook allows 63,206 characters: a caption practically never needs cutting.

A caption that does not fit is cut at a word boundary (never inside a URL, a hashtag, a
mention or a grapheme cluster, so never inside a multi-byte character), ends with an
ellipsis, and keeps a trailing block of hashtags and mentions when it can. Pure.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import regex

ELLIPSIS = "\u2026"
SEPARATOR = "\n"
_SCALE = 100  # costs are in hundredths of a character, as twitter-text weighs them

_URL = r"https?://[^\s]*[^\s.,;:!?)\]}'\"\u00bb\u201d\u2019\u2026]"
_TOKENS = regex.compile(
    rf"(?P<url>{_URL})|(?P<space>\s+)|(?P<word>\S+?)(?=https?://|\s|$)", regex.I
)
_BARE_DOMAIN = regex.compile(
    r"(?<![\w@])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}(?:/\S*)?", regex.I
)
_TAG = regex.compile(r"[#@][\w@.\-]+", regex.V1)
_GRAPHEME = regex.compile(r"\X")
#: twitter-text v3 code point ranges of weight 1 (everything else weighs 2).
_LIGHT = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))


@dataclass(frozen=True)
class TextRules:
    """How a service counts a post's text and how much it takes."""

    max_length: int
    url_length: int | None = None  # each URL counts this much; None: its own length
    weighted: bool = False  # twitter-text weights instead of one per grapheme cluster
    bare_domains: bool = False  # "example.com" counts as a URL too


MASTODON = TextRules(500, url_length=23)
TWITTER = TextRules(280, url_length=23, weighted=True, bare_domains=True)
FACEBOOK = TextRules(63206)


def text_length(text: str, rules: TextRules) -> float:
    """The length ``rules``' service counts for ``text`` (NFC-normalized first)."""
    return sum(_token_cost(kind, tok, rules) for kind, tok in _tokens(_nfc(text))) / _SCALE


def adapt_caption(caption: str, permalink: str, rules: TextRules) -> str:
    """``caption`` then the link to the medium, cut to fit ``rules``; see the module doc."""
    caption = _nfc(caption).strip()
    link = SEPARATOR + permalink if caption else permalink
    limit = rules.max_length * _SCALE
    if permalink in caption and _cost(caption, rules) <= limit:
        return caption
    if _cost(caption, rules) + _cost(link, rules) <= limit:
        return caption + link
    tokens = [(k, t) for k, t in _tokens(caption) if not (k == "url" and t == permalink)]
    budget = limit - _cost(SEPARATOR + permalink + ELLIPSIS, rules)
    body, tags = _split_trailing_tags(tokens)
    tail = " " + "".join(t for _, t in tags)
    if tags and _cost(tail, rules) <= budget // 2:
        kept = _cut(body, budget - _cost(tail, rules), rules)
        text = (kept + ELLIPSIS if kept else "") + tail
        return text.strip() + SEPARATOR + permalink
    kept = _cut(tokens, budget, rules)
    return (kept + ELLIPSIS + SEPARATOR if kept else "") + permalink


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _tokens(text: str) -> list[tuple[str, str]]:
    return [(m.lastgroup or "word", m.group()) for m in _TOKENS.finditer(text)]


def _cost(text: str, rules: TextRules) -> int:
    return sum(_token_cost(kind, tok, rules) for kind, tok in _tokens(text))


def _token_cost(kind: str, token: str, rules: TextRules) -> int:
    if kind == "url" and rules.url_length is not None:
        return rules.url_length * _SCALE
    if kind == "word" and rules.bare_domains and rules.url_length is not None:
        total, at = 0, 0
        for m in _BARE_DOMAIN.finditer(token):
            total += _plain_cost(token[at : m.start()], rules)
            total += max(_plain_cost(m.group(), rules), rules.url_length * _SCALE)
            at = m.end()
        return total + _plain_cost(token[at:], rules)
    return _plain_cost(token, rules)


def _plain_cost(text: str, rules: TextRules) -> int:
    return sum(_grapheme_cost(g, rules) for g in _GRAPHEME.findall(text))


def _grapheme_cost(grapheme: str, rules: TextRules) -> int:
    if not rules.weighted:
        return _SCALE
    weights = [_SCALE if _light(ord(c)) else 2 * _SCALE for c in grapheme]
    if len(weights) > 1 and max(weights) > _SCALE:
        return 2 * _SCALE  # an emoji sequence counts once
    return sum(weights)


def _light(code_point: int) -> bool:
    return any(lo <= code_point <= hi for lo, hi in _LIGHT)


def _split_trailing_tags(
    tokens: list[tuple[str, str]],
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The caption before its trailing run of hashtags and mentions, and that run."""
    i = len(tokens)
    while i > 0 and (tokens[i - 1][0] == "space" or _TAG.fullmatch(tokens[i - 1][1])):
        i -= 1
    while i < len(tokens) and tokens[i][0] == "space":
        i += 1
    tags = tokens[i:]
    if not any(k == "word" for k, _ in tags):
        return tokens, []
    return tokens[:i], tags


def _cut(tokens: list[tuple[str, str]], budget: int, rules: TextRules) -> str:
    """The longest whole-token prefix of ``tokens`` costing at most ``budget``; when even the
    first word is too long, as many of its grapheme clusters as fit (never part of a URL)."""
    out: list[str] = []
    spent = 0
    for kind, token in tokens:
        cost = _token_cost(kind, token, rules)
        if spent + cost > budget:
            if not out and kind == "word":
                for g in _GRAPHEME.findall(token):
                    spent += _grapheme_cost(g, rules)
                    if spent > budget:
                        break
                    out.append(g)
            break
        out.append(token)
        spent += cost
    return "".join(out).rstrip().rstrip(",;:-\u2013\u2014").rstrip()
