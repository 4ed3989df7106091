"""Caption adaptation: limits per service, URL weighting, cuts at safe boundaries."""

from __future__ import annotations

import pytest

from server.domain.captions import (
    ELLIPSIS,
    FACEBOOK,
    MASTODON,
    TWITTER,
    TextRules,
    adapt_caption,
    text_length,
)

LINK = "https://shutterlog.example/p/123456789"


def test_short_caption_is_kept_whole_with_the_link() -> None:
    """A caption that fits is untouched, followed by the link on its own line."""
    assert adapt_caption("  Morning fog #sf  ", LINK, TWITTER) == f"Morning fog #sf\n{LINK}"
    assert adapt_caption("", LINK, MASTODON) == LINK


def test_a_caption_already_holding_the_link_is_not_given_it_twice() -> None:
    """When the caption contains the permalink and fits, nothing is appended."""
    assert adapt_caption(f"see {LINK} now", LINK, MASTODON) == f"see {LINK} now"


def test_urls_count_23_on_twitter_and_mastodon() -> None:
    """Any URL weighs 23 on X and Mastodon, bare domains only on X; Facebook counts chars."""
    url = "https://example.com/" + "a" * 80
    assert text_length(url, TWITTER) == text_length(url, MASTODON) == 23
    assert text_length(url, FACEBOOK) == len(url)
    assert text_length("see example.com", TWITTER) == 4 + 23
    assert text_length("see example.com", MASTODON) == 15


def test_twitter_weights() -> None:
    """Latin counts 1, CJK 2, an emoji sequence (skin tone, flag, ZWJ family) 2 once."""
    assert text_length("héllo", TWITTER) == 5
    assert text_length("日本", TWITTER) == 4
    assert text_length("👍🏽🇫🇷👨‍👩‍👧", TWITTER) == 6
    assert text_length("e\u0301", TWITTER) == 1  # NFC-normalized to é first
    assert text_length("👍🏽", MASTODON) == 1  # one grapheme cluster


@pytest.mark.parametrize("rules", [TWITTER, MASTODON, TextRules(60, url_length=23)])
def test_long_captions_are_cut_on_a_word_boundary_with_an_ellipsis(rules: TextRules) -> None:
    """A long caption is cut between words, ends with an ellipsis, fits, keeps the link."""
    caption = " ".join(f"word{i}" for i in range(200))
    out = adapt_caption(caption, LINK, rules)
    body, link = out.rsplit("\n", 1)
    assert link == LINK and body.endswith(ELLIPSIS)
    assert body[:-1].split(" ")[-1] in caption.split(" ")  # the last word is whole
    assert rules.max_length - 8 <= text_length(out, rules) <= rules.max_length


def test_never_cuts_inside_a_url_or_a_grapheme() -> None:
    """A URL that does not fit is dropped whole; a cut never splits an emoji sequence."""
    rules = TextRules(40)
    caption = "see https://example.com/a/very/long/path/indeed ok"
    out = adapt_caption(caption, "https://s.x/p", rules)
    assert "https://example.com" not in out and out.endswith("https://s.x/p")
    out = adapt_caption("👍🏽" * 50, "https://s.x/p", TextRules(20))
    assert out.split("\n")[0] == "👍🏽" * 5 + ELLIPSIS


def test_one_giant_word_is_cut_on_a_grapheme_boundary() -> None:
    """When even the first word is too long, it is cut between grapheme clusters."""
    out = adapt_caption("a" * 500, LINK, TWITTER)
    assert out == "a" * (280 - 23 - 1 - 2) + ELLIPSIS + "\n" + LINK  # ellipsis weighs 2 on X
    assert text_length(out, TWITTER) == 280


def test_trailing_hashtags_and_mentions_are_kept_when_they_fit() -> None:
    """The closing block of #tags and @mentions survives a cut of the text before it."""
    caption = "long story " * 60 + "#travel #japan @friend"
    out = adapt_caption(caption, LINK, TWITTER)
    assert out.endswith(f"{ELLIPSIS} #travel #japan @friend\n{LINK}")
    assert text_length(out, TWITTER) <= 280
    only_tags = adapt_caption("#a " * 200, LINK, TextRules(30, url_length=23))
    assert text_length(only_tags, TextRules(30, url_length=23)) <= 30 and LINK in only_tags


def test_facebook_rarely_cuts() -> None:
    """Facebook's 63,206 characters take a long caption whole."""
    caption = "x " * 5000
    assert adapt_caption(caption, LINK, FACEBOOK) == caption.strip() + "\n" + LINK
