"""Result tables: CSV / Markdown writing and the rounded, rendered table the notebooks show."""

from diffcmr_core.tables import read_csv, rounded, show, write_table


def test_rounded_per_column_and_show_prints_outside_ipython(capsys):
    rows = [{"method": "RAW", "acc": 4, "psnr": 16.905341, "ssim": 0.2654129, "ms": 1234.5678}]
    assert rounded(rows, {"psnr": 2, "ssim": 4, "ms": 1}) == [
        {"method": "RAW", "acc": 4, "psnr": 16.91, "ssim": 0.2654, "ms": 1234.6}
    ]
    assert rounded(rows, 0)[0]["ms"] == 1235.0
    show(rows, {"psnr": 2, "ssim": 4, "ms": 1}, title="T")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "**T**"
    assert out[2] == "| method | acc | psnr | ssim | ms |"
    assert out[4] == "| RAW | 4 | 16.91 | 0.2654 | 1234.6 |"
    show([{"method": "PI-CS", "paper_psnr": float("nan"), "psnr": 30.123}], {"psnr": 1})
    assert capsys.readouterr().out.splitlines()[2] == "| PI-CS | n/a | 30.1 |"  # not "nan"


def test_write_table_keeps_full_precision(tmp_path):
    rows = [{"method": "U-Net", "psnr": 20.591234567}]
    csv_path, md_path = write_table(rows, tmp_path / "t")
    assert float(read_csv(csv_path)[0]["psnr"]) == 20.591234567
    assert "| U-Net | 20.5912 |" in md_path.read_text()


def test_evaluation_findings_name_the_best_method_per_setting():
    from diffcmr_core.study.writeup.report import evaluation_findings

    rows = [
        {"method": "RAW", "acc": 4, "psnr": 17.0, "ssim": 0.30},
        {"method": "U-Net", "acc": 4, "psnr": 21.0, "ssim": 0.45},
        {"method": "DiffCMR", "acc": 4, "psnr": 20.5, "ssim": 0.51},
    ]
    protocols = [
        {"method": m, "acc": 4, "challenge psnr": p}
        for m, p in (("RAW", 15.8), ("U-Net", 18.7), ("DiffCMR", 19.3))
    ]
    text = evaluation_findings({"cine": rows}, {"cine": protocols})
    assert text == (
        "* **cine 4x**: best PSNR U-Net (21.00 dB), best SSIM DiffCMR (0.510); DiffCMR "
        "20.50 dB, +3.50 dB over RAW; by the challenge's protocol DiffCMR (19.30 dB)."
    )
