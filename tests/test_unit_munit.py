"""What makes UNIT and MUNIT themselves: UNIT's KL term and shared layers, MUNIT's AdaIN,
style/content reconstruction and its stochastic translator; both exported as one module."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_method_steps import RecordingContext

from napari_medtrans.checkpoint import TranslatorMetadata, load_modules, save_translator
from napari_medtrans.intensity import ct_window, mr_percentile
from napari_medtrans.nets import build_network
from napari_medtrans.nets.multiscale import MultiScaleDiscriminator
from napari_medtrans.nets.munit import MUNITTranslator, adaptive_instance_norm
from training.methods import get_method
from training.methods.unit import latent_kl

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"ngf": 8, "ndf": 8, "n_res": 2, "n_layers_d": 3, "num_scales": 2}


def build(name: str, **overrides):
    cls = get_method(name)
    torch.manual_seed(0)
    options = cls.Options(**{**TINY, **({"mlp_dim": 16} if name == "munit" else {}), **overrides})
    return cls(options, in_channels=1, out_channels=1, lr=cls.default_lr, device=torch.device("cpu"))


def images(seed: int = 1, size: int = 32) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {key: torch.rand(2, 1, size, size, generator=generator) * 2 - 1 for key in ("source", "target")}


# --- UNIT ------------------------------------------------------------------------------------
def test_unit_kl_term_by_hand():
    mean = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    assert latent_kl(mean).item() == pytest.approx((1 + 4 + 0.25 + 0) / 4)  # the reference's mean(μ²)
    kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, torch.ones_like(mean)), torch.distributions.Normal(0.0, 1.0)
    ).sum()  # KL(N(μ, I) ‖ N(0, I)) = ½ Σ μ² = 2.625
    assert kl.item() == pytest.approx(2.625)
    assert latent_kl(mean).item() == pytest.approx(2 / mean.numel() * kl.item())


def test_unit_encoders_and_generators_share_their_layers():
    method = build("unit")
    nets = method.nets["G"]
    e_a, e_b = list(nets.encoder("A").parameters()), list(nets.encoder("B").parameters())
    g_a, g_b = list(nets.generator("A").parameters()), list(nets.generator("B").parameters())
    assert e_a[-1] is e_b[-1] and g_a[0] is g_b[0]  # last encoder layer, first generator layer: one Parameter
    assert e_a[0] is not e_b[0] and g_a[-1] is not g_b[-1]  # input and output layers are the domain's own
    shared = {id(p) for p in nets.enc_shared.parameters()} | {id(p) for p in nets.dec_shared.parameters()}
    assert len(shared) == 8  # one residual block each: two convolutions with weight and bias
    # a loss on domain B alone trains the shared layers that domain A's translation uses
    nets.zero_grad()
    F.l1_loss(nets.generator("B")(nets.encoder("B")(images()["target"])), images()["target"]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in nets.enc_shared.parameters())
    assert all(p.grad is None for p in nets.enc_a.parameters())
    # the checkpoint stores the shared layers once and the translator is a view of the training networks
    assert len(nets.state_dict()) == len({id(t) for t in nets.state_dict().values()})
    translator = method.generator
    assert translator.enc_shared is nets.enc_shared and translator.dec_b is nets.dec_b


def test_unit_translator_is_the_deterministic_latent_mean_path():
    method = build("unit")
    nets, x = method.nets["G"], images()["source"]
    with torch.no_grad():
        expected = nets.generator("B")(nets.encoder("A")(x))
        assert torch.equal(method.generator(x), expected) and torch.equal(method.generator(x), expected)
    assert method.translator_specs()["generator"]["arch"] == "unit_translator"
    with pytest.raises(ValueError, match="n_shared must lie in"):
        build("unit", n_shared=3)


def test_unit_and_munit_update_discriminators_first_with_the_reference_initialisation():
    for name, generators in (("unit", {"G"}), ("munit", {"G_A", "G_B"})):
        method = build(name)
        ctx = RecordingContext(method)
        method.train_step(images(), ctx)
        assert ctx.events == [({"D_A", "D_B"}, ["D"]), (generators, ["G"])]
        assert all(p.requires_grad for p in method.parameters())
    method = build("unit")
    stem = method.nets["G"].enc_a[1].weight  # Kaiming normal: std √(2 / fan_in), fan_in = 1 · 7 · 7
    assert abs(stem.std().item() - (2 / 49) ** 0.5) < 0.03
    head = method.nets["D_A"].scales[0][-1].weight  # the discriminators: N(0, 0.02)
    assert abs(head.std().item() - 0.02) < 0.01 and method.optimizers["G"].defaults["weight_decay"] == 1e-4


def test_multiscale_discriminator_scores_each_scale_and_names_the_minimum_size():
    net = MultiScaleDiscriminator(ndf=4, n_layers=4, num_scales=3)
    assert [tuple(s.shape) for s in net(torch.zeros(1, 1, 64, 64))] == [(1, 1, 4, 4), (1, 1, 2, 2), (1, 1, 1, 1)]
    with pytest.raises(ValueError, match=r"at least 64² pixels.*lower num_scales or n_layers_d"):
        net(torch.zeros(1, 1, 32, 32))


# --- MUNIT -----------------------------------------------------------------------------------
def test_adain_gives_each_channel_the_styles_mean_and_std():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=generator) * 5 + 3
    mean = torch.tensor([[0.5, -1.0, 2.0], [0.0, 1.0, -3.0]])
    std = torch.tensor([[1.0, 0.1, 3.0], [2.0, 0.5, 1.5]])
    out = adaptive_instance_norm(x, mean, std)
    assert torch.allclose(out.mean(dim=(2, 3)), mean, atol=1e-5)
    assert torch.allclose(out.std(dim=(2, 3), unbiased=False), std, atol=1e-3)


def test_munit_latent_reconstruction_compares_with_the_sampled_style_and_the_real_content():
    method = build("munit")
    batch = images()
    ctx = RecordingContext(method)
    ctx.generator = torch.Generator().manual_seed(7)
    _, losses, fake_a, fake_b = method.generator_objective(batch["source"], batch["target"], ctx)
    replay = torch.Generator().manual_seed(7)  # the styles drawn from N(0, I), A's first
    style_a, style_b = (torch.randn(2, 8, generator=replay) for _ in range(2))
    g_a, g_b = method.autoencoders()
    with torch.no_grad():
        assert losses["style_A"].item() == pytest.approx(F.l1_loss(g_a.style(fake_a), style_a).item(), rel=1e-5)
        assert losses["style_B"].item() == pytest.approx(F.l1_loss(g_b.style(fake_b), style_b).item(), rel=1e-5)
        expected = F.l1_loss(g_b.content(fake_b), g_a.content(batch["source"]))
        assert losses["content_A"].item() == pytest.approx(expected.item(), rel=1e-5)
        assert torch.allclose(fake_b, g_b.decode(g_a.content(batch["source"]), style_b), atol=1e-5)
    assert "cycle_A" not in losses  # the explicit cycle is off by default (recon_x_cyc_w 0)
    assert {"cycle_A", "cycle_B"} <= set(
        build("munit", lambda_cycle=10.0).generator_objective(
            batch["source"], batch["target"], RecordingContext(method)
        )[1]
    )


def test_munit_translator_is_stochastic_and_reproducible_per_seed():
    method = build("munit")
    spec = method.translator_specs()["generator"]
    assert spec["arch"] == "munit_translator" and spec["stochastic"] is True
    translator = method.generator
    assert translator.stochastic is True and translator.steps == 1
    x = images()["source"]
    with torch.no_grad():
        first = translator(x, noise=torch.Generator().manual_seed(1))
        again = translator(x, noise=torch.Generator().manual_seed(1))
        other = translator(x, noise=torch.Generator().manual_seed(2))
        assert translator(x).shape == x.shape  # noise=None: the global RNG
    assert torch.equal(first, again) and not torch.allclose(first, other)
    assert first.abs().max() <= 1
    with pytest.raises(ValueError, match="stochastic=true"):
        MUNITTranslator(stochastic=False)


@pytest.mark.parametrize("name", ["unit", "munit"])
def test_translator_saves_and_loads_as_one_module(name, tmp_path):
    method = build(name)
    spec = method.translator_specs()["generator"]
    metadata = TranslatorMetadata(
        name=f"tiny-{name}",
        method=name,
        source="T1",
        target="CT",
        networks={"generator": spec},
        source_intensity=mr_percentile().to_dict(),
        target_intensity=ct_window().to_dict(),
        size=32,
    )
    path = save_translator(tmp_path / "t.safetensors", method.translator_modules(), metadata)
    modules, loaded = load_modules(path)
    generator = modules["generator"]
    assert type(generator) is type(build_network(spec)) and loaded.networks["generator"] == spec
    x = images()["source"]
    with torch.no_grad():
        if name == "munit":
            assert torch.equal(
                generator(x, torch.Generator().manual_seed(3)), method.generator(x, torch.Generator().manual_seed(3))
            )
        else:
            assert torch.equal(generator(x), method.generator(x))
