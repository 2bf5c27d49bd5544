"""Snowflake-style post ids: milliseconds in the high bits, so ids sort by creation time."""

import time
from datetime import UTC, datetime
from itertools import pairwise

import pytest

from microblog.core import ids
from microblog.core.ids import EPOCH_MS, LOW_BITS, first_id_at_ms, id_to_ms, new_id
from microblog.posts.models import Post

MAX_ID = (1 << 63) - 1


@pytest.fixture
def fresh_counter(monkeypatch):
    """A process that has made no id yet (restored afterwards, so later ids stay in order)."""
    monkeypatch.setattr(ids, "_last_id", 0)


def test_ids_are_strictly_increasing_within_a_process():
    made = [new_id() for _ in range(20_000)]
    assert all(a < b for a, b in pairwise(made))


def test_ids_made_in_the_same_millisecond_are_still_increasing_and_keep_that_millisecond(
    fresh_counter,
):
    ms = int(time.time() * 1000) + 60_000
    made = [new_id(ms) for _ in range(5_000)]
    assert all(a < b for a, b in pairwise(made))
    assert {id_to_ms(i) for i in made} == {ms}


def test_id_to_ms_round_trips(fresh_counter):
    base = int(time.time() * 1000) + 120_000
    for ms in (base, base + 1, base + 999, base + 86_400_000):
        assert id_to_ms(new_id(ms)) == ms


def test_id_of_the_current_time_reads_back_the_current_time():
    before = int(time.time() * 1000)
    made = new_id()
    after = int(time.time() * 1000)
    assert before <= id_to_ms(made) <= after


def test_ids_sort_by_time_whatever_the_random_low_bits(fresh_counter):
    base = int(time.time() * 1000) + 180_000
    earlier = [new_id(base) for _ in range(50)]
    later = new_id(base + 1)
    assert max(earlier) < later
    assert later >= first_id_at_ms(base + 1)
    assert all(first_id_at_ms(base) <= i < first_id_at_ms(base + 1) for i in earlier)


def test_a_clock_that_steps_back_never_produces_a_smaller_id(fresh_counter):
    base = int(time.time() * 1000) + 240_000
    first = new_id(base)
    second = new_id(base - 5_000)  # e.g. NTP corrected the clock
    assert second > first


def test_first_id_at_ms_is_the_smallest_id_of_that_millisecond():
    ms = EPOCH_MS + 1_000
    assert first_id_at_ms(ms) == 1_000 << LOW_BITS
    assert id_to_ms(first_id_at_ms(ms)) == ms
    assert id_to_ms(first_id_at_ms(ms) - 1) == ms - 1
    assert first_id_at_ms(EPOCH_MS - 10) == 0  # before the epoch: no negative cursor


def test_ids_fit_a_signed_64_bit_column_until_2090():
    """41 bits of milliseconds after the 2024 epoch last about 69 years."""
    ms_in_2090 = int(datetime(2090, 1, 1, tzinfo=UTC).timestamp() * 1000)
    assert first_id_at_ms(ms_in_2090) | ((1 << LOW_BITS) - 1) <= MAX_ID


def test_ids_of_today_are_positive_64_bit_integers():
    made = new_id()
    assert 0 < made < MAX_ID


def test_a_post_id_tells_when_the_post_was_written(alice, make_post):
    first = make_post(alice, "first")
    second = make_post(alice, "second")
    assert first.id < second.id
    for post in (first, second):
        stored = Post.objects.get(id=post.id)
        written_ms = int(stored.created_at.timestamp() * 1000)
        assert 0 <= id_to_ms(stored.id) - written_ms <= 1
