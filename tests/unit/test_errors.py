"""One error tree: everything Ferry raises on purpose is a ``FerryError``, the worker's
destination errors included, and each error says what happened in its own words."""

from __future__ import annotations

import fakeredis
import pytest

from producers import errors
from producers.errors import FerryError, JobNotFound
from producers.store import JobStore
from worker.errors import DestinationError, OutcomeUnknown, Throttled


def test_every_error_class_hangs_under_the_one_root():
    declared = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert {c.__name__ for c in declared} >= {
        "SubmitError", "IdempotencyConflict", "ConfigError", "JobNotFound", "ReplayRefused",
        "ActiveJob", "ManifestError"}
    assert all(issubclass(c, FerryError) for c in declared)
    assert issubclass(DestinationError, FerryError)
    assert issubclass(Throttled, DestinationError) and issubclass(OutcomeUnknown, DestinationError)


def test_a_missing_job_says_so_in_words_not_as_a_quoted_key():
    store = JobStore(fakeredis.FakeRedis(decode_responses=True))
    with pytest.raises(JobNotFound) as caught:
        store.get("abc123")
    assert not isinstance(caught.value, KeyError)
    assert str(caught.value) == "no job abc123"
    assert caught.value.job_id == "abc123"
