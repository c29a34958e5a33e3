import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the offline MNIST copy sits beside the checkout; FA_DATA wins when set
os.environ.setdefault("FA_DATA", str((REPO.parent / "shared" / "data").resolve()))


@pytest.fixture
def repo():
    return REPO
