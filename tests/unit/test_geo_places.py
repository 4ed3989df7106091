"""Point-in-radius for real-time matching, same-place rules of locations, and the privacy
decision: pure."""

from __future__ import annotations

import random

import pytest

from server.domain.accounts import AccountPrivacyChanged, decide_privacy
from server.domain.geo import GeoValueError, haversine_m, in_radius
from server.domain.locations import Location, parse_name_query, same_place


def test_in_radius_agrees_with_haversine_near_poles_and_the_antimeridian() -> None:
    """in_radius is exactly haversine <= radius, the box pre-check never drops a point."""
    rng = random.Random(7)
    for centre in ((89.999, 12.0), (-89.99, -100.0), (0.0, 179.9999), (-16.5, -180.0),
                   (48.85, 2.35)):
        for _ in range(2000):
            lat = max(-90.0, min(90.0, centre[0] + rng.uniform(-0.1, 0.1)))
            lng = (centre[1] + rng.uniform(-0.2, 0.2) + 540.0) % 360.0 - 180.0
            radius = 10 ** rng.uniform(1, 3.7)
            assert in_radius(*centre, radius, lat, lng) == \
                (haversine_m(*centre, lat, lng) <= radius)


def test_in_radius_across_the_antimeridian() -> None:
    """A point on the other side of 180 degrees is near, not 40,000 km away."""
    assert in_radius(0.0, 179.9999, 50, 0.0, -179.9999)
    assert not in_radius(0.0, 179.9999, 5, 0.0, -179.9999)


def test_same_place_needs_the_same_name_and_nearness() -> None:
    """Same name in any case within 250 m: the same place; another name or farther: not."""
    known = Location(1, "Café de Flore", 48.854, 2.3325, 1)
    assert same_place(known, "CAFÉ DE FLORE", 48.8555, 2.3325)
    assert not same_place(known, "Café de Flore", 48.857, 2.3325)  # 330 m
    assert not same_place(known, "Les Deux Magots", 48.854, 2.3325)


def test_location_name_query() -> None:
    """q is trimmed, 1 to 100 characters, without control characters."""
    assert parse_name_query("  caf ") == "caf"
    for bad in ("", "   ", "x" * 101, "a\x00b", None):
        with pytest.raises(GeoValueError, match="^q must be"):
            parse_name_query(bad)


def test_privacy_decision_appends_only_a_change() -> None:
    """Switching to what the account already is decides nothing."""
    assert decide_privacy(5, False, False) == []
    assert decide_privacy(5, True, False) == [AccountPrivacyChanged(user_id=5, is_private=False)]
    assert decide_privacy(5, False, True) == [AccountPrivacyChanged(user_id=5, is_private=True)]
