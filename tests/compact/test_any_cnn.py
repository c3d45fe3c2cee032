"""Any pruned CNN: the ops of torchvision/timm architectures lower, compact exactly and export.

Our own fixture (AllOps) carries every op with a channel rule (pooling, squeeze-excitation,
chunk + channel shuffle, channels-last LayerNorm/Linear/GELU with layer scale, dilated and
non-square convs, adaptive pooling before a flatten and a Linear) plus one op with no rule
(torch.roll), so it runs without torchvision. The torchvision families follow where torchvision
is installed (the test extra installs it).
"""

import json
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import st_deploy
from st_deploy.compact import compact, lower
from st_deploy.compact.pipeline import run_passes
from st_deploy.errors import DeployError
from st_deploy.ticket import Ticket

from tests.compact.compact_builders import assert_close, mask_generic, run_graph
from tests.compact.naive_passes import naive_run_passes


class AllOps(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.se_pool = nn.AdaptiveAvgPool2d(1)
        self.se1, self.se2 = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)
        self.branch = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.SiLU())
        self.dw = nn.Conv2d(16, 16, 7, padding=3, groups=16)
        self.norm = nn.LayerNorm(16, eps=1e-6)
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 16)
        self.gamma = nn.Parameter(torch.rand(16, 1, 1) + 0.5)
        self.avg = nn.AvgPool2d(2, 2, padding=1)
        self.dil = nn.Conv2d(16, 12, 3, padding=2, dilation=2)
        self.wide = nn.Conv2d(12, 12, (1, 3), padding=(0, 1))
        self.bn = nn.BatchNorm2d(12)
        self.head_pool = nn.AdaptiveAvgPool2d((3, 3))
        self.fc = nn.Linear(12 * 9, 5)

    def forward(self, x):
        x = self.pool(self.stem(x))
        gate = F.hardsigmoid(self.se2(F.relu(self.se1(self.se_pool(x)))))
        x = x * gate
        a, b = x.chunk(2, dim=1)
        x = torch.cat([a, self.branch(b)], dim=1)
        n, c, h, w = x.size()
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y)))).permute(0, 3, 1, 2)
        x = x + self.gamma * y
        x = torch.roll(self.avg(x), 1, dims=3)  # no rule: an opaque node
        x = torch.sigmoid(self.bn(self.wide(self.dil(x)))) * 2.0 - 1.0
        return self.fc(torch.flatten(self.head_pool(x), 1))


def _ticket(seed: int, density: float, dead: float, size: int = 32) -> Ticket:
    torch.manual_seed(seed)
    m = mask_generic(AllOps(), torch.Generator().manual_seed(seed), density, dead)
    return Ticket(module=m, family="masked", config={}, task="classification",
                  default_input_shape=(1, 3, size, size))


@pytest.mark.parametrize("seed,density,dead", [(0, 0.5, 0.3), (1, 0.2, 0.5), (2, 0.9, 0.0)])
def test_all_ops_compact_exactly(seed, density, dead):
    ticket = _ticket(seed, density, dead)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    ref = ticket(x)
    graph = lower(ticket)
    assert {n.op for n in graph.nodes} >= {"pool", "mul", "gather", "layer_norm", "flatten", "adaptive_avg_pool",
                                           "opaque", "global_avg_pool"}
    assert_close(run_graph(graph, x), ref, "lowered")
    ours, _ = run_passes(graph, 0.0, after_pass=lambda name, g: assert_close(run_graph(g, x), ref, name))
    naive, _ = naive_run_passes(graph, 0.0)
    assert [(n.name, n.op, n.attrs, {k: tuple(v.shape) for k, v in n.params.items()}) for n in ours.nodes] == \
        [(n.name, n.op, n.attrs, {k: tuple(v.shape) for k, v in n.params.items()}) for n in naive.nodes]
    c = compact(ticket)
    with torch.no_grad():
        assert_close(c.ticket.module(x), ref, "compacted")
    assert c.report["opaque_ops"] == [{"node": "roll", "op": "roll"}]
    if dead > 0:
        assert c.report["channels"]["removed"] > 0


def test_all_ops_export_onnx_and_llvm(tmp_path):
    ticket = _ticket(0, 0.3, 0.3)
    onnx_dir = st_deploy.export(ticket, target="onnx", out=tmp_path / "onnx")
    manifest = json.loads((onnx_dir / "manifest.json").read_text())
    assert manifest["opaque_ops"] == [{"node": "roll", "op": "roll"}]
    assert max(v["rel"] for v in manifest["fidelity"]["files"].values()) <= 1e-4
    plan = {lp["name"]: lp for lp in manifest["plan"]["layers"]}
    assert plan["dil"]["kind"] == "general" and plan["dil"]["format"] == "dense"
    assert "no sparse kernel" in plan["dil"]["reason"]
    tvm_dir = st_deploy.export(ticket, target="llvm", out=tmp_path / "llvm")
    manifest = json.loads((tvm_dir / "manifest.json").read_text())
    assert manifest["opaque_ops"] == [{"node": "roll", "op": "roll"}]
    assert manifest["fidelity"]["files"]["model.so"]["rel"] <= 1e-4
    runner = st_deploy.load(tvm_dir, threads=1)
    x = torch.randn(1, 3, 32, 32)
    assert_close(torch.from_numpy(runner.run(x.numpy())), ticket(x), "llvm artifact")


def test_in_memory_module_with_prune_hooks(tmp_path):
    """A model pruned with torch.nn.utils.prune goes straight to export; the user's module is untouched."""
    torch.manual_seed(0)
    model = AllOps().eval()
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            torch.nn.utils.prune.l1_unstructured(m, "weight", amount=0.8)
    # Right after pruning each weight is a non-leaf tensor (orig * mask with grad), which deepcopy refuses.
    ticket = st_deploy.load_ticket(model, input_shape=(1, 3, 32, 32))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    assert set(ticket.masks()) >= {"fc1", "dil", "fc"}
    assert_close(ticket(x), before, "ticket")
    out = st_deploy.export(model, target="onnx", out=tmp_path / "a", input_shape=(1, 3, 32, 32))
    assert (out / "model.sparse.onnx").exists()
    assert hasattr(model.fc1, "weight_orig")  # the hooks are still the user's
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_export_at_another_size_is_refused_for_shape_specific_graphs(tmp_path):
    with pytest.raises(DeployError, match="lowered"):
        st_deploy.export(_ticket(0, 0.5, 0.0), target="onnx", out=tmp_path / "x", input_shape=(1, 3, 48, 48))
    assert not (tmp_path / "x").exists()


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:  # control flow on values: no graph can hold it
            return y
        return -y


def test_data_dependent_control_flow_is_refused_in_one_line():
    t = Ticket(module=DataDependent().eval(), family="masked", config={}, task="classification",
               default_input_shape=(1, 3, 16, 16))
    with pytest.raises(DeployError, match=r"torch.fx could not trace DataDependent") as e:
        compact(t)
    assert "\n" not in str(e.value)


# -- torchvision's architectures ------------------------------------------------------------------
def _torchvision():
    try:
        from st_deploy.models.torchvision_compat import import_torchvision
        return import_torchvision()
    except DeployError as e:  # torchvision is in the [test] extra: CI (CI set, as .ci/run does) needs it
        if os.environ.get("CI"):
            pytest.fail(f"{e}; CI={os.environ['CI']!r} requires it")
        pytest.skip(str(e))


FAMILIES = [  # (builder, input size, also llvm)
    ("resnet18", 64, True), ("resnext50_32x4d", 64, False), ("alexnet", 64, False), ("squeezenet1_1", 64, False),
    ("mobilenet_v3_small", 64, True), ("mnasnet0_5", 64, False), ("efficientnet_b0", 64, False),
    ("efficientnet_v2_s", 64, False), ("regnet_y_400mf", 64, False), ("regnet_x_400mf", 64, True),
    ("convnext_tiny", 64, True), ("densenet121", 64, False), ("shufflenet_v2_x0_5", 64, True),
    ("googlenet", 64, False), ("inception_v3", 80, False), ("vgg11", 32, False),
    ("segmentation.lraspp_mobilenet_v3_large", 64, True), ("segmentation.fcn_resnet50", 64, False),
    ("segmentation.deeplabv3_mobilenet_v3_large", 64, False),
]


@pytest.mark.slow
@pytest.mark.parametrize("arch,size,llvm", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_torchvision_family(arch, size, llvm, tmp_path):
    tv = _torchvision()
    torch.manual_seed(0)
    kwargs = {"aux_logits": False, "init_weights": False} if arch in ("googlenet", "inception_v3") else {}
    if arch.startswith("segmentation."):
        model = getattr(tv.models.segmentation, arch.split(".")[1])(weights=None, weights_backbone=None)
    else:
        model = getattr(tv.models, arch)(weights=None, **kwargs)
    model = mask_generic(model.eval(), torch.Generator().manual_seed(0), 0.3, 0.2)
    ticket = st_deploy.load_ticket(model, input_shape=(1, 3, size, size))
    c = compact(ticket)
    assert c.report["error"]["max_rel"] <= 1e-5
    assert c.report["channels"]["removed"] > 0
    out = st_deploy.export(c.ticket, target="onnx", out=tmp_path / "onnx", input_shape=(1, 3, size, size))
    manifest = json.loads((out / "manifest.json").read_text())
    assert any(lp["format"] != "dense" for lp in manifest["plan"]["layers"])
    if llvm:
        out = st_deploy.export(c.ticket, target="llvm", out=tmp_path / "llvm", input_shape=(1, 3, size, size))
        assert json.loads((out / "manifest.json").read_text())["fidelity"]["files"]["model.so"]["rel"] <= 1e-4


@pytest.mark.slow
def test_cli_exports_a_pruned_torchvision_state_dict(tmp_path):
    """`st-deploy export M.pt --model torchvision.models:NAME` as a user types it (the import shim is applied)."""
    import subprocess
    import sys
    tv = _torchvision()
    torch.manual_seed(0)
    model = tv.models.shufflenet_v2_x0_5(weights=None).eval()
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            torch.nn.utils.prune.l1_unstructured(m, "weight", amount=0.8)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    r = subprocess.run([sys.executable, "-m", "st_deploy", "export", str(tmp_path / "m.pt"), "--model",
                        "torchvision.models:shufflenet_v2_x0_5", "--target", "onnx", "-o", str(tmp_path / "a"),
                        "--input-shape", "1,3,64,64"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["opaque_ops"] == [] and manifest["fidelity"]["files"]["model.sparse.onnx"]["rel"] <= 1e-4
