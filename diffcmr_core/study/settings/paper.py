"""The paper's reported numbers (Tables 1-4), for side-by-side comparison in the report."""

from __future__ import annotations

TABLE1 = {  # task -> acc -> (train, valid), as printed
    "cine": {4: (14304, 1272), 8: (14304, 1272), 10: (14304, 1272)},
    "mapping": {4: (32904, 2904), 8: (32904, 2904), 10: (32904, 2904)},
}
# the same numbers under the task they count (see table1_note): the paper swapped the two rows
TABLE1_BY_TASK = {"cine": TABLE1["mapping"], "mapping": TABLE1["cine"]}


def table1_note() -> str:
    """Why the paper's Table 1 rows are swapped, with the arithmetic (Markdown)."""
    cine_train, cine_val = TABLE1["mapping"][4]
    map_train, map_val = TABLE1["cine"][4]
    per = lambda n, cases: n / (2 * 12 * cases)  # noqa: E731 - 2 coil types x 12 frames/weightings
    return "\n".join(
        [
            "**The paper printed Table 1's rows under each other's labels.** A pair is one 2D "
            "image (a frame or weighting of a slice), so a count is the sum of frames x slices "
            'over the files counted. Its "cine" row cannot be cine and fits mapping; its "mapping" '
            "row fits cine:",
            "",
            f'- "mapping" row, {cine_train:,} / {cine_val:,} = 2 coil types x 12 frames x '
            f"{per(cine_train, 110):.2f} slices x 110 training cases / "
            f"{per(cine_val, 10):.2f} slices x 10 validation cases: cine, MultiCoil + "
            "SingleCoil, short axis (9-12 slices) + long axis (2-3 views), about 12.5 slices "
            "per case.",
            f'- "cine" row, {map_train:,} / {map_val:,} = 2 coil types x 12 weightings '
            f"(9 T1 + 3 T2) x {per(map_train, 110):.2f} slices x 110 cases / "
            f"{per(map_val, 10):.2f} x 10: mapping, about 5-6 slices per file.",
            f"- The authors' own data notebooks print {cine_train + cine_val:,} cine pairs at 4x "
            f"(= {cine_train:,} + {cine_val:,}) and {map_train + map_val:,} mapping pairs "
            f"(= {map_train:,} + {map_val:,}).",
            "",
            "So the paper counted both coil types, both cine views and both maps, and swapped "
            "the labels; our tables compare our counts with the paper's numbers under the task "
            "they count "
            "(`paper.TABLE1_BY_TASK`).",
        ]
    )


# task -> method -> acc -> (psnr, ssim, nmse)
TABLE2_3 = {
    "cine": {
        "RAW": {
            4: (28.79, 0.8150, 0.2187),
            8: (27.94, 0.8082, 0.2781),
            10: (27.75, 0.8113, 0.2883),
        },
        "U-Net": {
            4: (33.11, 0.9212, 0.0673),
            8: (33.31, 0.9460, 0.0646),
            10: (32.71, 0.9391, 0.0740),
        },
        "cGAN": {
            4: (33.85, 0.9435, 0.0573),
            8: (33.14, 0.9449, 0.0669),
            10: (32.56, 0.9209, 0.0760),
        },
        "DiffCMR": {
            4: (36.10, 0.9277, 0.0346),
            8: (34.85, 0.9061, 0.0457),
            10: (34.47, 0.9016, 0.0493),
        },
    },
    "mapping": {
        "RAW": {
            4: (28.17, 0.8167, 0.2003),
            8: (27.15, 0.8041, 0.2578),
            10: (27.17, 0.8100, 0.2711),
        },
        "U-Net": {
            4: (32.06, 0.9340, 0.0537),
            8: (31.05, 0.9286, 0.0695),
            10: (29.49, 0.9106, 0.0987),
        },
        "cGAN": {
            4: (32.67, 0.9460, 0.0488),
            8: (30.65, 0.8899, 0.0805),
            10: (31.38, 0.9304, 0.0655),
        },
        "DiffCMR": {
            4: (34.60, 0.9071, 0.0372),
            8: (33.17, 0.8937, 0.0537),
            10: (33.04, 0.8941, 0.0536),
        },
    },
}

TABLE4A = {
    "Raw": (28.79, 0.8150, 0.2187),
    20: (25.52, 0.3664, 0.3830),
    100: (29.86, 0.6006, 0.1393),
    500: (35.39, 0.9010, 0.0399),
    1000: (36.10, 0.9277, 0.0346),
}
TABLE4B = {
    "Raw": (28.79, 0.8150, 0.2187),
    1: (33.89, 0.8491, 0.0561),
    2: (35.25, 0.8994, 0.0417),
    4: (36.10, 0.9277, 0.0346),
    8: (36.68, 0.9430, 0.0305),
}


def paper_row(task: str, method: str, acc: int) -> dict[str, float]:
    """The paper's PSNR, SSIM and NMSE for ``method`` at ``acc`` (NaN where it reports none)."""
    if method not in TABLE2_3[task]:  # a method the paper does not report
        return {"paper_psnr": float("nan"), "paper_ssim": float("nan"), "paper_nmse": float("nan")}
    psnr, ssim, nmse = TABLE2_3[task][method][acc]
    return {"paper_psnr": psnr, "paper_ssim": ssim, "paper_nmse": nmse}
