import os
from pathlib import Path

import pytest

SAMPLE_NAMES = ("cls_mini_supernet", "cls_mini_searched", "seg_mini_supernet")


def _samples_dir() -> Path | None:
    candidates = []
    if os.environ.get("ST_DEPLOY_SHARED"):
        candidates.append(Path(os.environ["ST_DEPLOY_SHARED"]) / "samples" / "supertickets")
    candidates.append(Path(__file__).resolve().parents[2] / ".." / "shared" / "samples" / "supertickets")
    for c in candidates:
        if (c / "cls_mini_supernet.state_dict").is_file():
            return c.resolve()
    return None


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    d = _samples_dir()
    if d is None:
        pytest.skip("SuperTickets samples not found: set ST_DEPLOY_SHARED to the shared folder "
                    "(holding samples/supertickets/)")
    return d
