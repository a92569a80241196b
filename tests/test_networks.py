import pytest
import torch

from diffcmr_core.method.networks import DiffCMRConfig, DiffCMRNet, PatchDiscriminator, UNet, UNetConfig, parameter_counts

TINY = DiffCMRConfig(image_size=16, channels=8, channel_mult=(1, 2), num_res_blocks=1,
                     attention_resolutions=(8,), num_heads=2, rrdb_blocks=1, rrdb_channels=8,
                     rrdb_growth=4)


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
    torch.testing.assert_close(net.denoise(x, t, feats), out)   # Eq. 3 with G cached
    counts = parameter_counts(net)
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_depth_and_attention_follow_the_config():
    net = DiffCMRNet(DiffCMRConfig(image_size=32, channels=8, channel_mult=(1, 1, 2, 2), num_res_blocks=2,
                                   attention_resolutions=(8, 4), num_heads=1, rrdb_blocks=3,
                                   rrdb_channels=8, rrdb_growth=4))
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
