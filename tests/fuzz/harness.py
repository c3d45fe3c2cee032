"""Run one hostile input under a time bound and classify the outcome."""

from __future__ import annotations

import collections
import os
import signal
import traceback
from typing import Any, Callable

from st_deploy import DeployError

CASES = int(os.environ.get("ST_DEPLOY_FUZZ_CASES", "40"))  # per category; CI default


class CaseTimeout(Exception):
    pass


class WrongResult(Exception):
    """Raised by a case whose input loaded but computes something it must not."""


def _alarm(signum, frame):  # noqa: ARG001
    raise CaseTimeout()


class Tally:
    """Per category: how many inputs, how many ended in a clear error, how many loaded.

    A case returns its outcome ("ok", or another name the category allows, e.g. "ok-changed"
    for a load whose output differs because the input's content really changed); None counts
    as "ok". WrongResult counts as "wrong", a failure.
    """

    def __init__(self) -> None:
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.failures: list[str] = []

    def run(self, category: str, fn: Callable[[], Any], seconds: int = 20) -> str:
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(seconds)
        try:
            outcome = fn() or "ok"
        except WrongResult as e:
            outcome = "wrong"
            self.failures.append(f"{category}: loaded but wrong: {e}")
        except DeployError as e:
            msg = str(e)
            outcome = "error" if msg and "\n" not in msg else "bad-message"
            if outcome == "bad-message":
                self.failures.append(f"{category}: multi-line or empty DeployError: {msg[:200]!r}")
        except CaseTimeout:
            outcome = "hang"
            self.failures.append(f"{category}: took more than {seconds}s")
        except Exception as e:  # anything but a DeployError is a crash of ours
            outcome = "crash"
            self.failures.append(f"{category}: {type(e).__name__}: {e}\n{traceback.format_exc()[-1500:]}")
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        self.counts[category][outcome] += 1
        return outcome

    def summary(self) -> str:
        return "; ".join(f"{c}: {sum(n.values())} tried ({', '.join(f'{k} {v}' for k, v in sorted(n.items()))})"
                         for c, n in sorted(self.counts.items()))
