"""Fuzz suites: the case counts written at the end (the end-to-end fuzzer uses the session Triton)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

from tests.conftest import REPO_ROOT
from tests.fuzz.counts import record

# Hypothesis keeps a cache (constants it found in the source) in its home folder, `.hypothesis/` of the
# working directory by default; the examples database is off in every property (database=None).
set_hypothesis_home_dir(str(REPO_ROOT / "out" / "fuzz" / "hypothesis"))


@pytest.fixture(scope="session", autouse=True)
def _record_case_counts() -> Iterator[None]:
    yield
    counts = record()
    if counts:
        print("\nfuzz cases ran (out/fuzz/counts.json):", counts)
