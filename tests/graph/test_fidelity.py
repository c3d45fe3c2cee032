"""graph.fidelity: the one seeded input and the one max_abs / rel measure every stage reports."""

from __future__ import annotations

import numpy as np
import torch

from st_deploy.graph.fidelity import as_arrays, compare, input_description, reference_outputs, seeded_input


def test_seeded_input_is_torch_randn_from_a_seeded_generator() -> None:
    x = seeded_input((2, 3, 4, 4), 7)
    assert x.dtype == np.float32 and x.shape == (2, 3, 4, 4)
    assert np.array_equal(x, torch.randn((2, 3, 4, 4), generator=torch.Generator().manual_seed(7)).numpy())
    assert np.array_equal(seeded_input([1, 3, 4, 4]), seeded_input((1, 3, 4, 4), 0))
    assert not np.array_equal(seeded_input((1, 3, 4, 4), 0), seeded_input((1, 3, 4, 4), 1))
    assert input_description([1, 3, 8, 8]) == "torch.randn(1, 3, 8, 8) seed 0"


def test_rel_is_the_worst_output_relative_to_its_own_scale() -> None:
    ref = [np.array([100.0, -200.0], np.float32), np.array([0.5, 1.0], np.float32)]
    got = [np.array([101.0, -200.0], np.float32), np.array([0.5, 1.25], np.float32)]
    fid = compare(ref, got)
    assert fid["max_abs"] == 1.0  # the first output's
    assert fid["rel"] == 0.25     # the second's: 0.25 of its max |reference| 1.0
    assert compare(ref, [got[0], np.zeros(3, np.float32)]) == {"max_abs": float("inf"), "rel": float("inf")}
    assert compare([np.zeros(2, np.float32)], [np.zeros(2, np.float32)]) == {"max_abs": 0.0, "rel": 0.0}


def test_outputs_of_any_runtime_as_arrays() -> None:
    t = torch.arange(4.0).reshape(2, 2)
    for y in (t, [t], (t, t * 2), {"out": t, "aux": t * 2}, [t.numpy()]):
        arrays = as_arrays(y)
        assert all(isinstance(a, np.ndarray) for a in arrays) and np.array_equal(arrays[0], t.numpy())
    assert len(as_arrays({"out": t, "aux": t})) == 2
    ref = reference_outputs(lambda x: {"out": x * 2, "aux": x}, seeded_input((1, 2)))
    assert [r.shape for r in ref] == [(1, 2), (1, 2)] and np.array_equal(ref[0], 2 * seeded_input((1, 2)))
