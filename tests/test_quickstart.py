"""The README's main job, end to end (slow: about a minute on 2 cores)."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quickstart_main_job(tmp_path, capsys, readme_figures):
    from fcm.cli import main

    code = main(
        [
            "sweep",
            str(ROOT / "configs" / "quickstart.yaml"),
            "--jobs",
            "2",
            "--no-progress",
            "--output",
            str(tmp_path / "qs"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["complete"] and result["records"] == 30 * (1 + 8 + 12)  # reference + feature QPs + remote QPs
    report = result["report"]
    md = Path(report["report_md"]).read_text()
    assert "| `feature/x265` |" in md and "remote/x265" in md
    png = Path(report["rd_plot"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    rows = Path(report["summary_csv"]).read_text().splitlines()
    assert len(rows) == 1 + 8 + 12
    bd = json.loads(Path(report["report_json"]).read_text())["bd"][0]
    assert bd["test"] == "feature/x265" and bd["bd_rate"] is not None and bd["bd_rate"] < 0
    # the headline is defensible: its 95 % interval over inputs lies below zero
    assert bd["bd_rate_ci"]["hi"] < 0 and not bd["bd_rate_ci"]["crosses_zero"]
    assert Path(report["edge_plot"]).is_file() and "## Edge cost" in md
    # the README quotes this very run's figures (timings aside), as tools/readme_figures.py measured them
    figures = json.loads((ROOT / "docs" / "figures.json").read_text())["sections"]["quickstart"]
    now = readme_figures.quickstart(tmp_path / "qs")
    untimed = {k: v for k, v in figures["values"].items() if k not in figures["timed"]}
    assert {k: now[k] for k in untimed} == untimed, "rerun python tools/readme_figures.py quickstart"
