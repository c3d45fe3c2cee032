"""Generic masked models: torch.nn.utils.prune form and weight_mask buffers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.utils.prune as prune

from st_deploy import DeployError, load_ticket, save_ticket
from st_deploy.models.zoo import mobilenetv2_like, resnet18_like

RESNET = "st_deploy.models.zoo:resnet18_like"


def pruned_resnet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = resnet18_like()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            prune.l1_unstructured(m, "weight", amount=0.8)
    return model.eval()


def test_prune_form_round_trips(tmp_path):
    model = pruned_resnet()
    path = tmp_path / "resnet.pth"
    torch.save(model.state_dict(), path)
    ticket = load_ticket(path, model=RESNET)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    assert torch.allclose(ticket(x), expected, atol=1e-6)
    assert ticket.family == "masked" and len(ticket.masks()) == 21
    conv = dict(ticket.module.named_modules())["layer1.0.conv1"]
    assert torch.equal(conv.weight * conv.weight_mask, conv.weight)  # weight already masked

    packed = save_ticket(ticket, tmp_path / "ticket.pt")
    again = load_ticket(packed)  # zoo factories are trusted: no --model needed
    assert torch.equal(again(x), ticket(x))


def test_weight_mask_buffer_form(tmp_path):
    torch.manual_seed(1)
    model = mobilenetv2_like().eval()
    sd = model.state_dict()
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            mask = (torch.rand_like(m.weight) > 0.7).float()
            sd[f"{name}.weight_mask"] = mask
    path = tmp_path / "mbv2.pth"
    torch.save(sd, path)
    ticket = load_ticket(path, model="st_deploy.models.zoo:mobilenetv2_like")
    for name, mask in ticket.masks().items():
        assert torch.equal(mask, sd[f"{name}.weight_mask"])
    x = torch.randn(1, 3, 64, 64)
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            m.weight.data.mul_(sd[f"{name}.weight_mask"])
    with torch.no_grad():
        assert torch.allclose(ticket(x), model(x), atol=1e-6)


def test_plain_state_dict_needs_model(tmp_path):
    path = tmp_path / "r.pth"
    torch.save(resnet18_like().state_dict(), path)
    with pytest.raises(DeployError, match="--model"):
        load_ticket(path)


def test_untrusted_factory_is_not_imported_from_a_ticket(tmp_path):
    ticket = load_ticket(_save(tmp_path, pruned_resnet()), model=RESNET)
    payload_path = save_ticket(ticket, tmp_path / "t.pt")
    obj = torch.load(payload_path, weights_only=True)
    obj["config"]["model"] = "os:system"
    torch.save(obj, payload_path)
    with pytest.raises(DeployError, match="pass it explicitly with --model"):
        load_ticket(payload_path)


def _save(tmp_path, model):
    path = tmp_path / "m.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize("spec,match", [
    ("nocolon", "expected 'package.module:factory'"),
    ("no_such_module_xyz:f", "cannot import"),
    ("st_deploy.models.zoo:nothing", "no callable"),
])
def test_bad_model_spec(tmp_path, spec, match):
    with pytest.raises(DeployError, match=match):
        load_ticket(_save(tmp_path, pruned_resnet()), model=spec)


def test_mask_shape_and_values(tmp_path):
    sd = pruned_resnet().state_dict()
    sd["conv1.weight_mask"] = torch.ones(3)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(DeployError, match="conv1.weight_mask.*shape"):
        load_ticket(path, model=RESNET)
    sd = pruned_resnet().state_dict()
    sd["conv1.weight_mask"] = sd["conv1.weight_mask"] * 2
    torch.save(sd, path)
    with pytest.raises(DeployError, match="not binary"):
        load_ticket(path, model=RESNET)
