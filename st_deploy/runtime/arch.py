"""The CPU architecture of this machine, in the names artifacts use ("x86_64", "aarch64").

Its own module so that st_deploy.runtime.runner can check an artifact's architecture without importing
the TVM export (which needs TVM's compiler; a deployment box may have the runtime only)."""

from __future__ import annotations

import platform


def host_arch() -> str:
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)
