"""Rate-adaptive wrapper families (fcm.wrappers.family): bands, selection by QP, streams that name their variant."""

from __future__ import annotations

import pytest
import torch

from fcm.codecs import CodecParams
from fcm.errors import BitstreamError, ConfigError, WeightsError
from fcm.wrappers import FamilyVariant, WrapperFamily, build_wrapper, load_family, load_wrapper_or_family, save_family


def _reduction(lite0, channels: int, seed: int):
    torch.manual_seed(seed)
    w = build_wrapper("channel_reduction", lite0.spec, channels=channels, hidden=8)
    with torch.no_grad():
        for p in w.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return w.eval()


@pytest.fixture(scope="module")
def narrow(lite0):
    return _reduction(lite0, 24, 1)


@pytest.fixture(scope="module")
def wide(lite0):
    return _reduction(lite0, 64, 2)


@pytest.fixture(scope="module")
def family(narrow, wide):
    return WrapperFamily(
        [
            FamilyVariant("plain", 0, 27, None),
            FamilyVariant("cr64", 28, 35, wide),
            FamilyVariant("cr24", 36, 51, narrow),
        ]
    )


def test_each_qp_gets_the_variant_of_its_band(family, narrow, wide):
    assert [family.select(q) for q in (0, 27)] == [None, None]
    assert family.select(28) is wide and family.select(35) is wide
    assert family.select(36) is narrow and family.select(51) is narrow
    assert family.qp_range == (0, 51)
    with pytest.raises(ConfigError, match=r"QP 52 is outside the wrapper family's bands \(QP 0–51\)"):
        family.select(52)


def test_bands_must_tile_the_qps_and_variants_must_differ(narrow, wide):
    with pytest.raises(ConfigError, match="without gap or overlap: 'a' ends at QP 30, 'b' starts at 32"):
        WrapperFamily([FamilyVariant("a", 0, 30, None), FamilyVariant("b", 32, 51, wide)])
    with pytest.raises(ConfigError, match="without gap or overlap: 'a' ends at QP 30, 'b' starts at 30"):
        WrapperFamily([FamilyVariant("a", 0, 30, None), FamilyVariant("b", 30, 51, wide)])
    with pytest.raises(ConfigError, match="hold the same weights"):
        WrapperFamily([FamilyVariant("a", 0, 30, wide), FamilyVariant("b", 31, 51, wide)])
    with pytest.raises(ConfigError, match="labels must differ"):
        WrapperFamily([FamilyVariant("a", 0, 30, None), FamilyVariant("a", 31, 51, wide)])
    with pytest.raises(ConfigError, match="bad QP band"):
        WrapperFamily([FamilyVariant("a", 40, 30, None)])
    with pytest.raises(ConfigError, match="at least one variant"):
        WrapperFamily([])


def test_family_file_round_trip_and_tamper_check(tmp_path, lite0, family):
    path = tmp_path / "family.pt"
    tag = save_family(path, family, lite0, selection={"chosen_on": "validation"})
    loaded = load_wrapper_or_family(path, lite0)
    assert isinstance(loaded, WrapperFamily) and loaded.weights_tag == tag == family.weights_tag
    assert [(v.label, v.qp_min, v.qp_max) for v in loaded.variants] == [
        ("plain", 0, 27),
        ("cr64", 28, 35),
        ("cr24", 36, 51),
    ]
    x = {"stage4": torch.randn(1, 80, 4, 6)}
    for a, b in zip(family.variants[1:], loaded.variants[1:], strict=True):
        assert a.wrapper is not None and b.wrapper is not None
        assert torch.equal(a.wrapper(x)["stage4"], b.wrapper(x)["stage4"])

    data = torch.load(path, weights_only=True)
    data["variants"][1]["qp_max"] = 36
    data["variants"][2]["qp_min"] = 37
    torch.save(data, tmp_path / "edited.pt")
    with pytest.raises(WeightsError, match="damaged or edited file"):
        load_family(tmp_path / "edited.pt", lite0)
    data["variants"][1]["checkpoint"]["state_dict"]["pre.stage4.0.bias"] += 1
    torch.save(data, tmp_path / "edited.pt")
    with pytest.raises(WeightsError, match=r"variant 'cr64'.*weights hash to"):
        load_family(tmp_path / "edited.pt", lite0)
    del data["variants"][0]["checkpoint"]
    torch.save(data, tmp_path / "edited.pt")
    with pytest.raises(WeightsError, match="variant 0 must hold label, qp_min, qp_max and checkpoint"):
        load_family(tmp_path / "edited.pt", lite0)


def test_a_stream_decodes_with_the_variant_it_names(chelsea, lite0, family, narrow, wide):
    from fcm import bitstream, pipeline

    for qp, variant in ((24, None), (32, wide), (40, narrow)):
        params = CodecParams(qp, preset="ultrafast")
        enc = pipeline.encode(chelsea, lite0, "x265", params, wrapper=family)
        header, _ = bitstream.read(enc.bitstream)
        if variant is None:
            assert header.wrapper is None  # a plain-variant stream is a plain stream: it decodes without the family
            alone = pipeline.decode(enc.bitstream, lite0)
        else:
            assert (header.wrapper.name, header.wrapper.weights_tag) == (variant.name, variant.weights_tag)
            alone = pipeline.decode(enc.bitstream, lite0, wrapper=variant)
        direct = pipeline.encode(chelsea, lite0, "x265", params, wrapper=variant)
        assert direct.bitstream == enc.bitstream  # the family codes exactly what its variant codes
        through_family = pipeline.decode(enc.bitstream, lite0, wrapper=family)
        assert torch.equal(through_family.output, alone.output)


def test_a_stream_of_a_variant_the_family_lacks_is_refused(chelsea, lite0, family, narrow, wide):
    from fcm import pipeline

    stranger = _reduction(lite0, 24, 9)
    coded = pipeline.encode(chelsea, lite0, "x265", CodecParams(40, preset="ultrafast"), wrapper=stranger).bitstream
    named = rf"coded with wrapper channel_reduction \(weights {stranger.weights_tag}\)"
    with pytest.raises(BitstreamError, match=named):
        pipeline.decode(coded, lite0, wrapper=family)
    with pytest.raises(BitstreamError, match=r"its variants: 'plain': plain, QP 0–27; 'cr64': channel_reduction"):
        pipeline.decode(coded, lite0, wrapper=family)
    no_plain = WrapperFamily([FamilyVariant("cr64", 0, 35, wide), FamilyVariant("cr24", 36, 51, narrow)])
    plain = pipeline.encode(chelsea, lite0, "x265", CodecParams(24, preset="ultrafast")).bitstream
    with pytest.raises(BitstreamError, match=r"coded without a wrapper \(plain coding\), a variant the wrapper family"):
        pipeline.decode(plain, lite0, wrapper=no_plain)


def _curve(qps, rate, measure):
    return {q: (rate(q), measure(q)) for q in qps}


def test_bands_are_chosen_where_each_variant_wins_on_validation():
    from fcm.eval.family_bands import choose_bands

    qps = (22, 27, 32, 37, 42, 47)
    plain = _curve(qps, lambda q: 2 ** (-(q - 22) / 6), lambda q: 40 - 0.8 * (q - 22))
    # half the bits at every QP, but it saturates: 8 dB below plain at the highest rate, as good at the lowest
    reduced = _curve(qps, lambda q: 0.5 * 2 ** (-(q - 22) / 6), lambda q: min(32.0, 40 - 0.8 * (q - 22)))
    worse = _curve(qps, lambda q: 2 * 2 ** (-(q - 22) / 6), lambda q: 40 - 0.8 * (q - 22) - 1)
    choice = choose_bands({"plain": plain, "cr": reduced, "bad": worse}, ["plain", "cr", "bad"], "plain")
    # all-"cr" would halve the bits where it overlaps plain, but it cannot reach plain's best: refused; "bad" loses
    # everywhere: dropped
    assert choice.bands == (("plain", 0, 26), ("cr", 27, 51))
    assert choice.grid == {"plain": (22,), "cr": (27, 32, 37, 42, 47)} and choice.bd_rate < -30
    only_worse = choose_bands({"plain": plain, "bad": worse}, ["plain", "bad"], "plain")
    assert only_worse.bands == (("plain", 0, 51),) and only_worse.bd_rate == 0.0
    with pytest.raises(ConfigError, match="same validation QP grid"):
        choose_bands({"plain": plain, "cr": dict(list(reduced.items())[:5])}, ["plain", "cr"], "plain")


def test_a_server_given_a_family_decodes_every_variant_s_streams(tmp_path, chelsea, lite0, family, narrow):
    from fcm import bitstream, pipeline
    from fcm.serve.app import ModelCache, NotServed, ServedModel

    path = tmp_path / "family.pt"
    save_family(path, family, lite0)
    cache = ModelCache((ServedModel("efficientnet_lite0", "stage4", wrapper=str(path)),))
    cache.load()
    assert [None if e["wrapper"] is None else e["wrapper"]["weights"] for e in cache.describe()] == [
        None if v.wrapper is None else v.wrapper.weights_tag for v in family.variants
    ]
    for qp, expected in ((24, None), (40, narrow.weights_tag)):
        data = pipeline.encode(chelsea, lite0, "x265", CodecParams(qp, preset="ultrafast"), wrapper=family).bitstream
        served = cache.find(bitstream.read(data)[0]).wrapper
        assert (None if served is None else served.weights_tag) == expected
    stranger = _reduction(lite0, 24, 9)
    data = pipeline.encode(chelsea, lite0, "x265", CodecParams(40, preset="ultrafast"), wrapper=stranger).bitstream
    with pytest.raises(NotServed, match="does not serve"):
        cache.find(bitstream.read(data)[0])


def test_a_sweep_codes_each_qp_with_its_band_s_variant(tmp_path, lite0, family, narrow):
    from fcm.eval.config import SweepConfig
    from fcm.eval.sweep import run_sweep

    path = tmp_path / "family.pt"
    save_family(path, family, lite0)
    raw = {
        "name": "family",
        "dataset": {"kind": "embedded", "photos": ["chelsea"], "variants": 1},
        "model": "efficientnet_lite0",
        "split": "stage4",
        "codecs": ["x265"],
        "qps": [24, 40],
        "pipelines": {"feature": {}, "wrapped[family]": {"checkpoint": str(path)}},
        "evaluator": "fidelity",
        "preset": "ultrafast",
        "anchor": "feature/x265",
        "output": str(tmp_path / "run"),
    }
    cfg = SweepConfig.from_config(raw)
    (pipe,) = [p for p in cfg.pipelines if p.label == "wrapped[family]"]
    assert pipe.weights_tag == family.weights_tag and "'cr24': channel_reduction" in pipe.describe()
    records = {(r["pipeline"], r["qp"]): r for r in run_sweep(cfg, progress=False).records}
    # QP 24 lies in the plain band: the family's stream is the feature pipeline's, bit for bit
    assert records[("wrapped[family]", 24)]["bits"] == records[("feature", 24)]["bits"]
    assert records[("wrapped[family]", 24)]["eval"] == records[("feature", 24)]["eval"]
    # QP 40: the 24-channel variant, a smaller frame
    assert records[("wrapped[family]", 40)]["bits"] < records[("feature", 40)]["bits"]
    assert records[("wrapped[family]", 40)]["times"]["wrap"] > 0


def test_test_split_figures_are_recorded_only_from_a_test_sweep_of_that_very_file(tmp_path, lite0, narrow, wide):
    """tools/record_evaluation.py writes a test sweep's BD figures into the family file, keeping its weights tag,
    and refuses a sweep on other data, of other weights, or unfinished."""
    import importlib.util
    import json
    from pathlib import Path

    from fcm.eval.config import SweepConfig
    from fcm.eval.run import run_and_report

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("record_evaluation", root / "tools" / "record_evaluation.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    # plain coding up to QP 43, so the curves overlap and both BD figures exist
    family = WrapperFamily([FamilyVariant("plain", 0, 43, None), FamilyVariant("cr24", 44, 51, narrow)])
    path = tmp_path / "family.pt"
    save_family(path, family, lite0)
    raw = {
        "name": "family",
        "dataset": {"kind": "embedded", "photos": ["chelsea", "coffee", "astronaut", "rocket"], "variants": 2},
        "model": "efficientnet_lite0",
        "split": "stage4",
        "codecs": ["x265"],
        "qps": [18, 24, 30, 36, 40, 44, 48, 51],
        "pipelines": {"feature": {}, "wrapped[family]": {"checkpoint": str(path)}},
        "evaluator": "fidelity",
        "preset": "ultrafast",
        "anchor": "feature/x265",
        "bootstrap": 50,
        "output": str(tmp_path / "run"),
    }
    run_and_report(SweepConfig.from_config(raw), progress=False)
    folder = tmp_path / "run"
    argv = [str(path), "--sweep", str(folder), "--label", "wrapped[family]"]
    with pytest.raises(ConfigError, match=r"not the photo test split"):
        tool.main(argv)
    # the same results as if they had been measured on the test photos (the recorder reads only the folder)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["config"]["dataset"] = {"kind": "photos", "split": "test"}
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"has no pipeline 'wrapped\[x\]'"):
        tool.main([str(path), "--sweep", str(folder), "--label", "wrapped[x]"])
    other = tmp_path / "other.pt"
    save_family(other, WrapperFamily([FamilyVariant("plain", 0, 43, None), FamilyVariant("cr64", 44, 51, wide)]), lite0)
    with pytest.raises(ConfigError, match=r"ran weights .*, not this file's"):
        tool.main([str(other), "--sweep", str(folder), "--label", "wrapped[family]"])
    assert tool.main(argv) == 0
    data = torch.load(path, weights_only=True)
    entry = data["evaluation"]["test"]
    report = json.loads((folder / "report.json").read_text())
    (row,) = [r for r in report["bd"] if r["test"] == "wrapped[family]/x265"]
    (kl_row,) = [r for r in report["bd_smooth"]["kl_db"]["bd"] if r["test"] == "wrapped[family]/x265"]
    for name, bd in (("top1_agreement", row), ("kl_db", kl_row)):
        assert bd["bd_rate"] is not None
        assert entry[name] == {"bd_rate": bd["bd_rate"], "ci95": [bd["bd_rate_ci"]["lo"], bd["bd_rate_ci"]["hi"]]}
    assert entry["inputs"] == 8 and entry["anchor"] == "feature/x265"
    assert entry["dataset"] == {"kind": "photos", "split": "test"}
    points = [p for p in report["points"] if p["pipeline"] == "wrapped[family]"]
    assert entry["best_top1_agreement"] == max(p["metrics"]["top1_agreement"] for p in points)
    assert load_family(path, lite0).weights_tag == family.weights_tag  # the weights and their tag are untouched
    manifest["finished"] = None
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="is not finished"):
        tool.main(argv)
    # malformed files give a clear error, not a traceback
    for broken in (
        {"config": []},
        {"config": {"dataset": "photos"}},
        {**manifest, "config": {**manifest["config"], "pipelines": []}},
    ):
        manifest_path.write_text(json.dumps(broken))
        with pytest.raises(ConfigError):
            tool.main(argv)
    manifest["finished"] = "yes"
    manifest_path.write_text(json.dumps(manifest))
    report_path = folder / "report.json"
    good = report_path.read_text()
    for broken_report in ({**report, "points": [1, 2]}, {**report, "bd": ["x"]}, {**report, "bd_smooth": []}):
        report_path.write_text(json.dumps(broken_report))
        with pytest.raises(ConfigError, match=r"not what fcm sweep writes|no .* BD row"):
            tool.main(argv)
    report_path.write_text(good)
    assert tool.main(argv) == 0
