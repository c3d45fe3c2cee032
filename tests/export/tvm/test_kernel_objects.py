"""The TVM kernel-object cache: concurrent exports build once."""

from __future__ import annotations

import importlib
import threading
import time

# importlib: st_deploy.export is also the export function. tvm-ffi is a dependency: an import
# error fails here, never skips.
ko = importlib.import_module("st_deploy.export.tvm.kernel_objects")


def test_concurrent_callers_build_once(tmp_path, monkeypatch):
    monkeypatch.setenv("ST_DEPLOY_CACHE", str(tmp_path))
    monkeypatch.setattr(ko.shutil, "which", lambda name: "/usr/bin/" + name)
    builds = []

    def fake_build(src, dest, files, arch, cxx, cuda_arch, compilers):
        builds.append(dest)
        time.sleep(0.3)  # long enough that the other callers arrive while this one builds
        dest.mkdir()
        for f in files:
            f.write_bytes(b"obj")

    monkeypatch.setattr(ko, "_build", fake_build)
    got, errors = [], []

    def call():
        try:
            got.append(ko.kernel_objects("x86_64", "g++"))
        except Exception as e:  # collected: an exception in a thread would be lost
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(builds) == 1
    assert len(got) == 3 and all(g == got[0] for g in got)
    assert all(f.read_bytes() == b"obj" for f in got[0])
