"""The README's figures are the ones tools/readme_figures.py measured (docs/figures.json): none edited by hand."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_quotes_exactly_what_the_figures_script_measured(readme_figures):
    tool = readme_figures
    text = (ROOT / "README.md").read_text()
    figures = json.loads((ROOT / "docs" / "figures.json").read_text())
    assert len(tool.quoted_keys(text)) >= 40  # the main job, the wrapper, detection and both video sweeps
    assert tool.stale(text, figures) == [], "rerun python tools/readme_figures.py (never edit a marked figure)"
    assert tool.main(["--check"]) == 0


def test_the_figures_file_names_each_command_and_the_machine(readme_figures):
    tool = readme_figures
    figures = json.loads((ROOT / "docs" / "figures.json").read_text())
    assert set(figures["sections"]) == set(tool.SECTIONS)
    for name, section in figures["sections"].items():
        assert section["command"] == " ".join(tool._command(tool.SECTIONS[name]))
        assert section["results"] == f"runs/readme/{name}" and section["values"]
    machine = figures["machine"]
    assert machine["cpu"] and machine["torch_cpu_capability"] and machine["packages"]["torch"]


def test_an_edited_figure_is_found_and_rewritten(readme_figures):
    tool = readme_figures
    figures = {"sections": {"quickstart": {"values": {"bd_rate": "−84.1 %"}}}}
    text = "needs <!--fig:quickstart.bd_rate-->−90.0 %<!--/fig--> fewer bits, <!--fig:quickstart.nothing-->1<!--/fig-->"
    assert tool.stale(text, figures) == [
        "quickstart.bd_rate: README.md says '−90.0 %', docs/figures.json '−84.1 %'",
        "quickstart.nothing: quoted in README.md, missing from docs/figures.json",
    ]
    with pytest.raises(KeyError, match=r"quickstart\.nothing"):
        tool.render(text, figures)
    fixed = tool.render(text.split(",")[0], figures)
    assert fixed == "needs <!--fig:quickstart.bd_rate-->−84.1 %<!--/fig--> fewer bits"
    assert tool.stale(fixed, figures) == []


def test_the_main_jobs_figures_are_read_from_a_real_sweep(tmp_path, readme_figures):
    """The extraction runs on what `fcm sweep` writes (a small sweep of the same pipelines)."""
    from fcm.eval.config import SweepConfig
    from fcm.eval.run import run_and_report

    cfg = SweepConfig.from_config(
        {
            "name": "small",
            "dataset": {"kind": "embedded", "photos": ["chelsea", "coffee"], "variants": 2},
            "model": "efficientnet_lite0",
            "split": "stage4",
            "codecs": ["x265"],
            "pipelines": {"feature": {"qps": [27, 32, 37, 42]}, "remote": {"qps": [12, 22, 32, 42]}},
            "evaluator": "fidelity",
            "preset": "ultrafast",
            "bootstrap": 50,
            "output": str(tmp_path / "qs"),
        }
    )
    run_and_report(cfg, progress=False)
    values = readme_figures.quickstart(tmp_path / "qs")
    assert values["records"] == str(4 * (1 + 4 + 4)) and values["remote_lowest_qp"] == "12"
    assert values["edge_macs"].endswith(" M") and values["feature_kb"].endswith(" kB")
    assert values["bd_rate"] == "n/a" or values["bd_rate"].endswith(" %")
