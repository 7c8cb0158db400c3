"""One optimisation step of each method: which networks each backward reaches and each
optimiser moves, in the reference order (e.g. the discriminator frozen during the generator
update), plus the registered reference initialisation."""

from __future__ import annotations

import pytest
import torch

from training.methods import StepContext, get_method

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"ngf": 8, "ndf": 8}
RESNET = {**TINY, "n_blocks": 2}
UNET = {**TINY, "generator_options": {"depth": 2}, "n_layers_d": 3}  # 16² images for PI/UAPI
OPTIONS = {
    "pix2pix": RESNET,
    "cyclegan": {**RESNET, "pool_size": 2},
    "reggan": {**RESNET, "reg_nf": 8, "reg_depth": 3},
    "cut": {**RESNET, "num_patches": 16, "nce_features": 16, "nce_layers": [0, 4, 7, 10, 11]},
    "gcgan": {**RESNET, "pool_size": 2},
    "shape-cyclegan": {**RESNET, "pool_size": 2, "seg_features": 8, "seg_depth": 2},
    "ugac": {**TINY, "n_layers_d": 3, "generator_options": {"depth": 2, "cascade": 2}},
    "pi": {**UNET, "n_critic": 1, "critic_warmup": 0},
    "uapi": {**UNET, "n_critic": 1, "critic_warmup": 0},
}
#: (networks whose gradients one backward changes, optimisers stepped after it), in order
EXPECTED = {
    "pix2pix": [({"D"}, ["D"]), ({"G"}, ["G"])],
    "cyclegan": [({"G_AB", "G_BA"}, ["G"]), ({"D_A", "D_B"}, ["D"])],
    "reggan": [({"G", "R"}, ["G", "R"]), ({"D"}, ["D"])],
    "cut": [({"D"}, ["D"]), ({"G", "F"}, ["G", "F"])],
    "gcgan": [({"G"}, ["G"]), ({"D_B", "D_gc"}, ["D"])],
    "shape-cyclegan": [({"G_AB", "G_BA", "S_A", "S_B"}, ["G", "S"]), ({"D_A", "D_B"}, ["D"])],
    "ugac": [({"G_AB", "G_BA"}, ["G"]), ({"D_A", "D_B"}, ["D"])],
    "pi": [({"C"}, ["C"]), ({"C"}, ["C"]), ({"G"}, ["G"])],
    "uapi": [({"C"}, ["C"]), ({"C"}, ["C"]), ({"G"}, ["G"])],
}


class RecordingContext(StepContext):
    """Records, per backward, the networks whose gradients changed and the optimisers stepped."""

    def __init__(self, method) -> None:
        super().__init__(
            torch.device("cpu"),
            torch.amp.GradScaler("cpu", enabled=False),
            None,
            lambda params: None,
            torch.Generator().manual_seed(0),
        )
        self.method = method
        self.events: list[tuple[set[str], list[str]]] = []

    def _grads(self) -> dict[str, list[torch.Tensor | None]]:
        return {
            name: [None if p.grad is None else p.grad.clone() for p in net.parameters()]
            for name, net in self.method.nets.items()
        }

    def backward(self, loss: torch.Tensor) -> None:
        before = self._grads()
        super().backward(loss)
        after = self._grads()
        changed = {
            name
            for name in after
            if any(
                (a is None) != (b is None) or (a is not None and not torch.equal(a, b))
                for a, b in zip(before[name], after[name])
            )
        }
        self.events.append((changed, []))

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        super().step(optimizer)
        name = next(k for k, v in self.method.optimizers.items() if v is optimizer)
        self.events[-1][1].append(name)


def build(name: str, **overrides):
    cls = get_method(name)
    torch.manual_seed(0)
    options = cls.Options(**{**OPTIONS[name], **overrides})
    return cls(options, in_channels=1, out_channels=1, lr=cls.default_lr, device=torch.device("cpu"))


def batch(name: str) -> dict[str, torch.Tensor]:
    size = 16 if name in ("pi", "uapi") else 32  # PatchGAN discriminators need 32²
    generator = torch.Generator().manual_seed(1)
    images = {
        "source": torch.rand(2, 1, size, size, generator=generator) * 2 - 1,
        "target": torch.rand(2, 1, size, size, generator=generator) * 2 - 1,
    }
    if name == "shape-cyclegan":
        images.update(
            source_labels=torch.randint(0, 10, (2, size, size), generator=generator),
            target_labels=torch.randint(0, 10, (2, size, size), generator=generator),
        )
    return images


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_one_step_moves_the_right_networks_in_reference_order(name):
    method = build(name)
    before = {k: [p.detach().clone() for p in net.parameters()] for k, net in method.nets.items()}
    ctx = RecordingContext(method)
    ctx.iteration = 1
    method.train_step(batch(name), ctx)
    assert ctx.events == EXPECTED[name]
    moved = {
        k for k, net in method.nets.items() if any(not torch.equal(a, b) for a, b in zip(before[k], net.parameters()))
    }
    assert moved == set().union(*(changed for changed, _ in EXPECTED[name]))
    assert all(p.requires_grad for p in method.parameters())  # frozen networks are unfrozen again


def test_pi_critic_only_iterations_leave_the_generator_alone():
    method = build("pi", n_critic=2, critic_warmup=1)  # warm-up: generator after 4 critic iterations
    generator_before = [p.detach().clone() for p in method.nets["G"].parameters()]
    ctx = RecordingContext(method)
    for iteration in range(1, 4):
        ctx.iteration = iteration
        method.train_step(batch("pi"), ctx)
    assert ctx.events == [({"C"}, ["C"])] * 6
    assert all(torch.equal(a, b) for a, b in zip(generator_before, method.nets["G"].parameters()))


def test_reference_initialisation():
    pix2pix = build("pix2pix")
    weight = pix2pix.nets["D"].model[0].weight
    assert abs(weight.std().item() - 0.02) < 0.004 and (pix2pix.nets["D"].model[0].bias == 0).all()
    pi = build("pi")
    wide = pi.nets["C"].features[-2].weight  # Keras he_normal: std √(2 / fan_in) after truncation at 2σ
    std = (2 / (32 * 4 * 4)) ** 0.5  # fan_in = 32 channels · 4 · 4
    assert abs(wide.std().item() - std) < 0.05 * std and wide.abs().max() <= 2 * std / 0.8796
    assert get_method("cut").init_type == "xavier" and get_method("reggan").init_type == "default"


def test_cut_rejects_nce_layers_in_the_decoder():
    with pytest.raises(ValueError, match=r"nce_layers \[14\] lie outside the encoder of a 2-block ResNet"):
        build("cut", nce_layers=[0, 4, 7, 10, 14])


def test_deviations_list_options_that_differ_from_the_defaults():
    method = build("uapi", lambda_paired=10.0)
    assert method.deviations() == {
        "ngf": 8,
        "ndf": 8,
        "generator_options": {"depth": 2},
        "n_layers_d": 3,
        "n_critic": 1,
        "critic_warmup": 0,
        "lambda_paired": 10.0,
    }
    assert build("pix2pix").deviations() == RESNET


def test_gcgan_cross_model_trains_both_generators():
    method = build("gcgan", share_generator=False)
    ctx = RecordingContext(method)
    method.train_step(batch("gcgan"), ctx)
    assert ctx.events == [({"G", "G_gc"}, ["G"]), ({"D_B", "D_gc"}, ["D"])]
    assert method.translator_modules() == {"generator": method.nets["G"]}


def test_ugac_translates_with_a_ggd_sigma_map():
    method = build("ugac")
    out = method.translate(batch("ugac")["source"])
    assert set(out) == {"image", "scale"} and out["scale"].shape == (2, 1, 32, 32)
    mean, inv_alpha, beta = method.generator.forward_ggd(batch("ugac")["source"])
    alpha, shape = 1 / (inv_alpha + 1e-5), beta + 0.1
    expected = alpha * torch.sqrt(torch.exp(torch.lgamma(3 / shape) - torch.lgamma(1 / shape)))
    assert torch.allclose(out["scale"], expected) and torch.equal(out["image"], mean)
    with pytest.raises(ValueError, match="UGAC needs the generator 'unet_ggd'"):
        build("ugac", generator="resnet")


def test_shape_cyclegan_refuses_batches_without_labels():
    method = build("shape-cyclegan")
    images = {k: v for k, v in batch("shape-cyclegan").items() if not k.endswith("_labels")}
    with pytest.raises(ValueError, match="shape-cyclegan needs label maps of both domains"):
        method.train_step(images, RecordingContext(method))
