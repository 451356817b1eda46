"""controller.backoff: one exponential backoff for every reconnect loop."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from controller.backoff import Backoff
from devices.errors import ConfigError, MassagedError


def test_doubles_from_min_up_to_max_then_stays() -> None:
    delays = list(itertools.islice(Backoff(0.5, 4.0), 7))
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_reset_starts_again_from_min() -> None:
    backoff = Backoff(1.0, 60.0)
    assert [next(backoff) for _ in range(3)] == [1.0, 2.0, 4.0]
    assert backoff.attempts == 3
    backoff.reset()
    assert backoff.attempts == 0
    assert next(backoff) == 1.0


def test_jitter_draws_from_the_upper_part_of_each_delay() -> None:
    top = Backoff(1.0, 60.0, jitter=0.5, rng=lambda: 1.0)
    bottom = Backoff(1.0, 60.0, jitter=0.5, rng=lambda: 0.0)
    assert list(itertools.islice(top, 8)) == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert list(itertools.islice(bottom, 8)) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_real_jitter_stays_within_its_band() -> None:
    backoff = Backoff(2.0, 2.0, jitter=0.25)
    delays = list(itertools.islice(backoff, 200))
    assert all(1.5 <= d <= 2.0 for d in delays)
    assert len(set(delays)) > 1  # it is drawn, not fixed


def test_a_long_outage_never_overflows() -> None:
    backoff = Backoff(0.1, 30.0)
    for _ in range(5000):
        delay = next(backoff)
    assert delay == 30.0


def test_a_custom_factor() -> None:
    assert list(itertools.islice(Backoff(1.0, 100.0, factor=3.0), 5)) == [1, 3, 9, 27, 81]


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        ((0.0, 1.0), {}, "min_s must be a positive number"),
        ((1.0, float("inf")), {}, "max_s must be a positive number"),
        ((2.0, 1.0), {}, "shorter than min_s"),
        ((1.0, 2.0), {"jitter": 1.5}, "jitter must be 0..1"),
        ((1.0, 2.0), {"factor": 0.5}, "factor must be at least 1"),
    ],
)
def test_bad_settings_are_refused_by_name(
    args: tuple[float, float], kwargs: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        Backoff(*args, **kwargs)
    assert isinstance(caught.value, MassagedError)
