"""The top-level API names are functions, whatever stage modules were imported before."""

from __future__ import annotations

import importlib

import st_deploy


def test_api_functions_are_not_shadowed_by_stage_packages():
    for mod in ("st_deploy.export.onnx", "st_deploy.export.tvm", "st_deploy.compact.pipeline",
                "st_deploy.loaders.packed", "st_deploy.runtime.runner", "st_deploy.inspect"):
        importlib.import_module(mod)
    for name in ("load_ticket", "compact", "export", "inspect", "load", "pack", "make_example",
                 "ort_session", "ort_library_path"):
        assert callable(getattr(st_deploy, name)) and not isinstance(getattr(st_deploy, name), type(st_deploy)), name
