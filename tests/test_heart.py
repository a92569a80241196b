"""The heart's box: from the label truth to the network's image, against the preprocessing
itself (an indicator image put through the same k-space -> image path)."""

from __future__ import annotations

import numpy as np
import pytest

from diffcmr_core.data.kspace import fft2c, kspace_to_image
from diffcmr_core.data.pairs import PreprocessConfig
from diffcmr_core.data.phantom import anatomy
from diffcmr_core.study.steps.heart import acquired_box, heart_boxes, to_image, zoom_window

MYO = anatomy.LABEL["myocardium"]


def test_acquired_box_spans_every_frame_with_its_margin():
    label = np.zeros((3, 40, 60), np.uint8)
    label[0, 10:20, 30:35] = MYO
    label[2, 12:25, 28:33] = MYO  # the wall moves through the cycle: one box holds both
    label[1, 0:3, 0:3] = anatomy.LABEL["blood"]
    assert acquired_box(label, 2) == (8, 27, 26, 37)
    assert acquired_box(label, 50) == (0, 40, 0, 60)  # clipped to the grid
    assert acquired_box(np.zeros((2, 8, 8), np.uint8), 1) is None


@pytest.mark.parametrize(
    "pre, grid, box",
    [
        (PreprocessConfig(pad_to=512, size=128), (162, 512), (50, 110, 220, 290)),
        (PreprocessConfig(pad_to=256, size=32, roi=(1.0, 0.3125)), (100, 256), (30, 70, 110, 150)),
        (PreprocessConfig(pad_to=512, size=128, resize="public"), (204, 448), (60, 130, 180, 260)),
        (PreprocessConfig(pad_to=512, size=64, crop=True), (162, 512), (50, 110, 220, 290)),
    ],
)
def test_the_box_lands_where_the_preprocessing_puts_the_region(pre, grid, box):
    """A bright rectangle on the acquired grid, put through the profile's k-space -> image path
    (its own FFTs, padding, crop and resize): where its image is above half its height is the
    box :func:`to_image` computes, within a pixel."""
    ny, nx = grid
    image = np.zeros((ny, nx), np.complex64)
    image[box[0] : box[1], box[2] : box[3]] = 1.0
    out = kspace_to_image(
        fft2c(image), multicoil=False, pad_to=pre.pad_to, size=pre.size, crop=pre.crop,
        roi=pre.roi, resize_method=pre.resize,
    )  # fmt: skip
    rows = np.flatnonzero(out.max(1) > 0.5 * out.max())
    cols = np.flatnonzero(out.max(0) > 0.5 * out.max())
    y0, y1, x0, x1 = to_image(box, (ny, nx), pre)
    assert abs(rows[0] - y0) <= 1 and abs(rows[-1] + 1 - y1) <= 1, (rows, y0, y1)
    assert abs(cols[0] - x0) <= 1 and abs(cols[-1] + 1 - x1) <= 1, (cols, x0, x1)


def test_heart_boxes_read_the_truth_and_mark_the_rest(tiny_root):
    from diffcmr_core.data.phantom import load_truth, truth_path

    meta = {
        "case": np.array(["P001", "P001", "P009"]),
        "file": np.array(["cine_sax", "cine_sax", "cine_sax"]),
        "slice": np.array([0, 1, 0]),
    }
    pre = PreprocessConfig(pad_to=128, size=32)
    boxes = heart_boxes(tiny_root, meta, pre, pixel_mm=6.0)
    assert (boxes[2] == -1).all()  # no such case: no truth
    label = load_truth(truth_path(tiny_root, "TrainingSet", "P001", "cine_sax"))["label"]
    for i in range(2):
        z = meta["slice"][i]
        expect = acquired_box(label[:, z], int(round(15.0 / 6.0)))
        if expect is None:
            assert (boxes[i] == -1).all()
        else:
            assert tuple(boxes[i]) == to_image(expect, label.shape[-2:], pre)
            assert boxes[i][0] < boxes[i][1] and boxes[i][2] < boxes[i][3]


def test_zoom_window_is_square_inside_and_holds_the_box():
    assert zoom_window(np.array([-1, -1, -1, -1]), 32) == (0, 32, 0, 32)
    y0, y1, x0, x1 = zoom_window(np.array([2, 8, 25, 31]), 32)
    assert y1 - y0 == x1 - x0 == 16 and 0 <= y0 and y1 <= 32 and 0 <= x0 and x1 <= 32
    assert y0 <= 2 and y1 >= 8 and x0 <= 25 and x1 >= 31
    y0, y1, x0, x1 = zoom_window(np.array([10, 100, 40, 60]), 128)
    assert y1 - y0 == 90 and x0 <= 40 and x1 >= 60


def test_figure3_zooms_on_the_heart_at_its_own_grey_scale():
    """Figure 3's zoomed panels: the window's pixels, shown from 0 to the ground truth's maximum
    inside the window (a bright band outside it must not dim the heart), the error panels on
    the whole image's scale, and each reconstruction titled with its PSNR."""
    import matplotlib

    matplotlib.use("Agg")
    from diffcmr_core.method.metrics import all_metrics
    from diffcmr_core.study.writeup.plots import fig3_qualitative

    rng = np.random.default_rng(0)
    gt = np.full((64, 64), 0.05)
    gt[:4] = 1.0  # the chest wall: the image's maximum, outside the window
    gt[24:40, 24:40] = 0.2 + 0.1 * rng.random((16, 16))  # the heart
    raw = gt + 0.02 * rng.standard_normal(gt.shape)
    box = np.array([26, 38, 26, 38])
    fig = fig3_qualitative(
        [{"raw": raw, "ground truth": gt}], ["raw", "ground truth"], ["r"], [box]
    )
    y0, y1, x0, x1 = zoom_window(box, 64)
    zoomed = fig.axes[2].images[0]  # row 0: full field, raw, ground truth
    np.testing.assert_array_equal(zoomed.get_array(), gt[y0:y1, x0:x1] / gt.max())
    assert zoomed.get_clim() == pytest.approx((0.0, gt[y0:y1, x0:x1].max()))
    assert fig.axes[1].images[0].get_clim() == pytest.approx((0.0, gt[y0:y1, x0:x1].max()))
    assert f"{all_metrics(gt, raw)['psnr']:.2f} dB" in fig.axes[1].get_title()
