"""Shared fixtures. gevent patches the stdlib first, as the daemon's entry point does."""

from gevent import monkey

monkey.patch_all()

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO.parent / "shared" / "esl-captures"


@pytest.fixture(scope="session")
def captures_dir() -> Path:
    """The real FreeSWITCH 1.10 traffic recordings kept beside the repository."""
    if not (CAPTURES / "README.md").exists():
        pytest.skip(f"ESL captures not found at {CAPTURES}")
    return CAPTURES
