import pytest
import torch

from diffcmr_core.method.networks import (
    DiffCMRConfig,
    DiffCMRNet,
    PatchDiscriminator,
    UNet,
    UNetConfig,
    parameter_counts,
)

TINY = DiffCMRConfig(
    image_size=16,
    channels=8,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(8,),
    num_heads=2,
    rrdb_blocks=1,
    rrdb_channels=8,
    rrdb_growth=4,
)


def _randomise_output(net):
    # the last convolution is zero-initialised (output 0 at start); give it weights to test with
    torch.nn.init.normal_(net.unet.out[-1].weight, std=0.1)


@pytest.mark.parametrize("embedding", ["sinusoidal", "table"])
def test_shapes_and_cached_condition(embedding):
    torch.manual_seed(0)
    net = DiffCMRNet(TINY.__class__(**{**TINY.__dict__, "time_embedding": embedding})).eval()
    _randomise_output(net)
    x, u, t = torch.randn(3, 1, 16, 16), torch.randn(3, 1, 16, 16), torch.tensor([0, 500, 999])
    out = net(x, t, u)
    assert out.shape == x.shape and out.abs().sum() > 0
    feats = net.encode_condition(u)
    assert feats.shape == (3, TINY.channels, 16, 16)
    torch.testing.assert_close(net.denoise(x, t, feats), out)  # Eq. 3 with G cached
    counts = parameter_counts(net)
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_depth_and_attention_follow_the_config():
    net = DiffCMRNet(
        DiffCMRConfig(
            image_size=32,
            channels=8,
            channel_mult=(1, 1, 2, 2),
            num_res_blocks=2,
            attention_resolutions=(8, 4),
            num_heads=1,
            rrdb_blocks=3,
            rrdb_channels=8,
            rrdb_growth=4,
        )
    )
    n_attn = sum(type(m).__name__ == "AttentionBlock" for m in net.modules())
    # resolutions 32, 16, 8, 4: attention at 8 and 4 in 2 down + 3 up blocks each, + the middle
    assert n_attn == 2 * (2 + 3) + 1
    assert len(net.condition.body) == 3
    with pytest.raises(ValueError, match="divisible"):
        DiffCMRNet(DiffCMRConfig(image_size=18, channels=8, channel_mult=(1, 2, 2)))


def test_baselines_shapes():
    unet = UNet(UNetConfig(channels=8, depth=2))
    x = torch.randn(2, 1, 32, 32)
    assert unet(x).shape == x.shape
    d = PatchDiscriminator(channels=8)
    assert d(x, x).shape[:2] == (2, 1)


# ----------------------------------------------------------------------------- the public model
def _conv(cin, cout, k=3):
    return cin * cout * k * k + cout


def _public_e_count(c=128, mult=(1, 1, 2, 2, 4, 4), n_res=2, attn_ds=(8, 16), emb=512) -> int:
    """Parameters of improved-diffusion's UNetModel body (the public DiffCMR's E) by arithmetic,
    walking its block layout: res blocks (GroupNorm, conv, emb linear to scale and shift,
    GroupNorm, conv, 1x1 skip when the width changes), attention (GroupNorm, qkv, proj),
    strided-conv down, conv up, GroupNorm + conv out. ``attn_ds``: down-sampling rates."""

    def res(cin, cout):
        return (
            2 * cin
            + _conv(cin, cout)
            + emb * 2 * cout
            + 2 * cout
            + 2 * cout
            + _conv(cout, cout)
            + (0 if cin == cout else _conv(cin, cout, 1))
        )

    def attn(ch):
        return 2 * ch + _conv(ch, 3 * ch, 1) + _conv(ch, ch, 1)

    total, ch, ds, skips = 0, c, 1, [c]
    for level, m in enumerate(mult):
        for _ in range(n_res):
            total += res(ch, m * c) + (attn(m * c) if ds in attn_ds else 0)
            ch = m * c
            skips.append(ch)
        if level < len(mult) - 1:
            total += _conv(ch, ch)
            skips.append(ch)
            ds *= 2
    total += 2 * res(ch, ch) + attn(ch)
    for level, m in reversed(list(enumerate(mult))):
        for i in range(n_res + 1):
            total += res(ch + skips.pop(), m * c) + (attn(m * c) if ds in attn_ds else 0)
            ch = m * c
            if level and i == n_res:
                total += _conv(ch, ch)
                ds //= 2
    return total + 2 * ch + _conv(ch, 1)


class _PublicRRDBNet(torch.nn.Module):
    """The public code's condition encoder, written from its description (ESRGAN's RRDBNet
    without up-sampling): conv_first, RRDB trunk, trunk_conv + global skip, HRconv + LeakyReLU,
    conv_last; each RRDB three 5-conv dense blocks with 0.2-scaled residuals."""

    def __init__(self, nf=64, gc=32, nb=10, out=128):
        super().__init__()
        conv = lambda a, b: torch.nn.Conv2d(a, b, 3, 1, 1)  # noqa: E731
        self.conv_first = conv(1, nf)
        self.rdbs = torch.nn.ModuleList(
            torch.nn.ModuleList(
                torch.nn.ModuleList(
                    [
                        conv(nf, gc),
                        conv(nf + gc, gc),
                        conv(nf + 2 * gc, gc),
                        conv(nf + 3 * gc, gc),
                        conv(nf + 4 * gc, nf),
                    ]
                )
                for _ in range(3)
            )
            for _ in range(nb)
        )
        self.trunk_conv, self.HRconv, self.conv_last = conv(nf, nf), conv(nf, nf), conv(nf, out)

    def forward(self, x):
        lrelu = torch.nn.functional.leaky_relu
        fea = self.conv_first(x)
        h = fea
        for rrdb in self.rdbs:
            r = h
            for c1, c2, c3, c4, c5 in rrdb:
                x1 = lrelu(c1(r), 0.2)
                x2 = lrelu(c2(torch.cat((r, x1), 1)), 0.2)
                x3 = lrelu(c3(torch.cat((r, x1, x2), 1)), 0.2)
                x4 = lrelu(c4(torch.cat((r, x1, x2, x3), 1)), 0.2)
                r = c5(torch.cat((r, x1, x2, x3, x4), 1)) * 0.2 + r
            h = r * 0.2 + h
        fea = fea + self.trunk_conv(h)
        return self.conv_last(lrelu(self.HRconv(fea), 0.2))


def test_paper_network_has_the_public_models_parameter_count():
    """G, F, H, E and the total of ``DiffCMRConfig.paper()`` equal the public model's
    (127,451,393), each part counted independently (G built from the public layout, E by
    arithmetic over improved-diffusion's block layout, F and H by hand)."""
    with torch.device("meta"):
        net = DiffCMRNet(DiffCMRConfig.paper())
        public_g = _PublicRRDBNet()
    counts = parameter_counts(net)
    expected = {
        "G (RRDB encoder)": sum(p.numel() for p in public_g.parameters()),
        "F (stem)": _conv(1, 128),
        "H (time embedding)": (128 * 512 + 512) + (512 * 512 + 512),
        "E (U-Net)": _public_e_count(),
    }
    assert expected == {
        "G (RRDB encoder)": 7_342_592,
        "F (stem)": 1_280,
        "H (time embedding)": 328_704,
        "E (U-Net)": 119_778_817,
    }
    assert {k: counts[k] for k in expected} == expected
    assert counts["total"] == 127_451_393


def test_condition_encoder_computes_what_the_public_rrdbnet_computes():
    """Weights copied into the independent public-layout RRDBNet give the same output: the
    trunk conv, global skip and HR conv + LeakyReLU are where the public code has them."""
    torch.manual_seed(0)
    cfg = DiffCMRConfig(
        image_size=16,
        channels=8,
        channel_mult=(1, 2),
        rrdb_blocks=2,
        rrdb_channels=8,
        rrdb_growth=4,
    )
    ours = DiffCMRNet(cfg).condition
    public = _PublicRRDBNet(nf=8, gc=4, nb=2, out=8)
    src = [m for m in ours.modules() if isinstance(m, torch.nn.Conv2d)]
    dst = (
        [public.conv_first]
        + [c for rrdb in public.rdbs for rdb in rrdb for c in rdb]
        + [public.trunk_conv, public.HRconv, public.conv_last]
    )
    assert len(src) == len(dst)
    for a, b in zip(src, dst):
        b.load_state_dict(a.state_dict())
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(ours(x), public(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (1, 5, 7, 3), (4, 8, 16, 16)])
def test_the_sampling_upsample_is_nearest_interpolation_bit_for_bit(shape):
    """Without autograd the network upsamples through a broadcast view; its values are
    ``F.interpolate(mode="nearest")``'s exactly; with autograd it is ``F.interpolate``."""
    from torch.nn import functional as F

    from diffcmr_core.method.networks.diffcmr import upsample_nearest2x

    x = torch.randn(*shape)
    expected = F.interpolate(x, scale_factor=2.0, mode="nearest")
    with torch.inference_mode():
        fast = upsample_nearest2x(x)
    assert fast.shape == expected.shape and torch.equal(fast, expected)
    grad = x.clone().requires_grad_()
    assert upsample_nearest2x(grad).grad_fn.name().startswith("UpsampleNearest2D")


def test_the_network_samples_the_same_images_with_and_without_autograd():
    """The network's output in sampling (inference mode: the broadcast upsample) equals its
    output in training (autograd: ``F.interpolate``) to the bit."""
    torch.manual_seed(0)
    net = DiffCMRNet(TINY).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x, u, t = torch.randn(3, 1, 16, 16), torch.randn(3, 1, 16, 16), torch.tensor([0, 500, 999])
    trained = net(x.requires_grad_(), t, u)
    with torch.inference_mode():
        sampled = net(x.detach(), t, u)
    assert torch.equal(trained.detach(), sampled)
