"""The one folder st-deploy caches in: $ST_DEPLOY_CACHE, else ~/.cache/st-deploy.

Tuned cost tables, compiled kernel objects for TVM artifacts and bench's artifact cache live
under it, so one variable moves (or isolates, as the tests do) all of them.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "ST_DEPLOY_CACHE"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "st-deploy")
