"""Import torchvision's model definitions beside our CPU torch.

PyPI's torchvision 0.28.0 (the release for torch 2.13.0) is built against the CUDA torch: with
the CPU build its compiled ops do not load and `import torchvision` raises while registering
fake kernels for them (`torch.library.register_fake("torchvision::nms")`). The model
definitions use none of those ops, so registration is skipped while it imports.
"""

from __future__ import annotations

from types import ModuleType

import torch

from ..errors import DeployError


def import_torchvision() -> ModuleType:
    register_fake = torch.library.register_fake
    torch.library.register_fake = lambda *a, **k: (lambda f: f)  # type: ignore[assignment]
    try:
        import torchvision
        import torchvision.models.segmentation  # noqa: F401  (models' submodules load here too)
    except ImportError as e:
        raise DeployError(f"torchvision is not installed or does not import ({e}); "
                          f"pip install torchvision==0.28.0") from None
    finally:
        torch.library.register_fake = register_fake
    return torchvision
