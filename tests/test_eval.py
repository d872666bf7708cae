"""Datasets, evaluators, sweep configs, resumable sweeps and reports."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fcm.data import EmbeddedPhotos, ImageFolderClassification, ImageSet, build_dataset
from fcm.errors import ConfigError
from fcm.eval.config import SweepConfig


def _cfg(tmp_path: Path, **kw) -> dict:
    raw = {
        "name": "t",
        "dataset": {"kind": "embedded", "photos": ["chelsea", "coffee"], "variants": 2},
        "model": "efficientnet_lite0",
        "split": "stage4",
        "codecs": ["x265"],
        "qps": [27, 37],
        "pipelines": ["feature", "remote"],
        "evaluator": "fidelity",
        "preset": "ultrafast",
        "output": str(tmp_path / "run"),
    }
    raw.update(kw)
    return raw


# ---------------------------------------------------------------- datasets


def test_embedded_default_has_a_few_dozen_real_inputs():
    ds = EmbeddedPhotos()
    assert len(ds) >= 24
    assert len({s.id for s in ds}) == len(ds)
    shapes = {ds[i].image().shape for i in range(len(ds))}
    assert len(shapes) > 5  # crops and rescales differ
    a, b = ds[0].image(), ds[0].image()
    assert np.array_equal(a, b) and a.dtype == np.uint8  # deterministic


def _write_png(path: Path, seed: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.default_rng(seed).random((40, 50, 3)) * 255).astype(np.uint8)).save(path)


def test_image_folder_and_list_datasets(tmp_path):
    _write_png(tmp_path / "cls" / "281" / "a.png", 0)
    _write_png(tmp_path / "cls" / "tabby" / "b.png", 1)
    ds = ImageFolderClassification(tmp_path / "cls", categories=[str(i) for i in range(281)] + ["tabby"])
    assert [(s.id, s.label) for s in ds] == [("281/a", 281), ("tabby/b", 281)]
    (tmp_path / "list.txt").write_text("cls/281/a.png 7\ncls/tabby/b.png 9\n")
    ds = ImageFolderClassification(tmp_path / "list.txt")
    assert [s.label for s in ds] == [7, 9] and ds[0].image().shape == (40, 50, 3)
    assert len(ImageSet(tmp_path / "cls" / "281")) == 1
    with pytest.raises(ConfigError, match="neither an integer"):
        ImageFolderClassification(tmp_path / "cls")
    with pytest.raises(ConfigError, match="unknown dataset kind"):
        build_dataset({"kind": "imagenet"})
    with pytest.raises(ConfigError, match="not found"):
        build_dataset({"kind": "images", "root": str(tmp_path / "nope")})


def test_coco_dataset_and_map_evaluator(tmp_path):
    """COCO mAP through pycocotools: perfect detections give 100, shifted boxes less, none give 0."""
    from fcm.data import CocoDetection
    from fcm.eval.evaluators import CocoMAP

    _write_png(tmp_path / "img" / "1.png", 0)
    _write_png(tmp_path / "img" / "2.png", 1)
    gt = {
        "images": [
            {"id": 1, "file_name": "1.png", "width": 50, "height": 40},
            {"id": 2, "file_name": "2.png", "width": 50, "height": 40},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 18, "bbox": [5, 5, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [10, 8, 30, 25], "area": 750, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
    }
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(gt))
    ds = CocoDetection(tmp_path / "img", ann)
    assert [s.image_id for s in ds] == [1, 2]

    def det(boxes, labels):
        return [
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32),
                "labels": torch.tensor(labels),
                "scores": torch.ones(len(labels)),
            }
        ]

    ev = CocoMAP(ann)
    ev.process(ds[0], det([[5, 5, 25, 25]], [18]))
    ev.process(ds[1], det([[10, 8, 40, 33]], [1]))
    assert ev.evaluate()["mAP"] == pytest.approx(100.0)
    ev.reset()
    ev.process(ds[0], det([[8, 8, 28, 28]], [18]))  # IoU 0.53: counts at AP50 only
    ev.process(ds[1], det([[10, 8, 40, 33]], [18]))  # wrong class
    m = ev.evaluate()
    assert 0 < m["mAP"] < m["AP50"] <= 100


def test_fidelity_and_accuracy_evaluators():
    from fcm.data import Sample
    from fcm.eval.evaluators import ClassificationAccuracy, ClassificationFidelity

    s = Sample("x", lambda: np.zeros((8, 8, 3), np.uint8), label=2)
    ref = torch.tensor([[0.0, 1.0, 3.0, 0.5]])
    fid = ClassificationFidelity()
    r_same = fid.process(s, ref.clone(), ref)
    r_diff = fid.process(s, torch.tensor([[4.0, 1.0, 0.0, 0.5]]), ref)
    assert r_same["kl"] == pytest.approx(0.0, abs=1e-12) and r_diff["kl"] > 1
    assert fid.evaluate()["top1_agreement"] == 50.0
    acc = ClassificationAccuracy()
    acc.process(s, ref)
    assert acc.evaluate() == {"top1": 100.0, "top5": 100.0}
    with pytest.raises(ConfigError, match="reference"):
        fid.process(s, ref)


# ---------------------------------------------------------------- configs


def test_config_errors_fail_before_any_work(tmp_path):
    def bad(match, **kw):
        with pytest.raises(ConfigError, match=match):
            SweepConfig.from_config(_cfg(tmp_path, **kw))
        assert not (tmp_path / "run").exists()  # nothing was written

    bad("unknown model", model="yolo")
    bad("unknown split", split="stage9")
    bad("unknown codec", codecs=["x266"])
    bad("QP in", qps=[22, 99])
    bad("unknown pipeline 'edge'; known: feature, remote, wrapped", pipelines=["feature", "edge"])
    bad("pipeline label 'Wrapped!'", pipelines={"Wrapped!": {}})
    bad("pipelines repeat a label", pipelines=["feature", "feature"])
    bad("pipeline 'wrapped' needs checkpoint", pipelines={"wrapped": {}})
    bad("wrapper checkpoint not found", pipelines={"wrapped[scaled]": {"checkpoint": str(tmp_path / "none.pt")}})
    bad("pipeline 'feature': settings must be a mapping", pipelines={"feature": 3})
    bad("unknown config keys", qp=3)
    bad("anchor", anchor="remote/vp9")
    bad("qps of feature must be a non-empty list of int", qps=[True])
    bad("limit must be", limit=True)
    bad("model_options must be", model_options=[1, 2])
    bad("output must name a folder", output=None)
    bad("output must be a str", output=3)
    bad("preset must be", preset=[5])
    bad("bit_depth must be", bit_depth="10")
    bad("does not support 9-bit", bit_depth=9)
    bad(
        "remote pictures in yuv444p: codec 'svtav1' cannot code yuv444p",
        codecs=["svtav1"],
        preset=None,  # SVT-AV1's presets are numbers
        pipelines={"feature": {}, "remote": {"format": "yuv444p"}},
    )
    bad("remote pictures in yuv420p10: codec 'vp9' does not support 10-bit", codecs=["vp9"], preset=None)
    bad("codec 'svtav1' has no preset 'ultrafast'", codecs=["svtav1"])  # one preset name must suit every codec
    bad("unknown picture format 'rgb24'", pipelines={"remote": {"format": "rgb24"}})
    bad("unknown sample range 'tv'", pipelines={"remote": {"range": "tv"}})
    bad(
        r"pipeline 'remote': unknown settings \['matrix'\]; known: qps, format, range",
        pipelines={"remote": {"matrix": "bt709"}},
    )
    bad("codec 'ffv1' is lossless", codecs=["ffv1"])
    bad("qps name pipelines", qps={"feature": [30], "remote": [20], "wrapped": [3]})
    bad("qps gives no QPs for pipelines", qps={"feature": [30]})
    bad("qps of pipeline 'remote' contain duplicates", qps={"feature": [30], "remote": [20, 20]})
    bad("bootstrap must be", bootstrap=-1)
    bad("bootstrap must be", bootstrap=None)
    bad("bootstrap_seed must be an integer >= 0", bootstrap_seed=-1)
    bad("bootstrap_seed must be an integer >= 0", bootstrap_seed=None)
    bad("min_overlap must be", min_overlap=1.5)
    bad("sha256 checks a weights file", sha256="abc")
    bad("dataset must be a mapping", dataset=5)
    raw = _cfg(tmp_path)
    del raw["qps"]
    with pytest.raises(ConfigError, match=r"qps gives no QPs for pipelines \['feature'\]"):
        SweepConfig.from_config(raw)
    del raw["model"]
    with pytest.raises(ConfigError, match="missing required keys"):
        SweepConfig.from_config(raw)
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        SweepConfig.from_yaml(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="not found"):
        SweepConfig.from_yaml(tmp_path / "missing.yaml")


def test_missing_dataset_fails_before_any_record(tmp_path):
    from fcm.eval.sweep import RESULTS_FILE, run_sweep

    cfg = SweepConfig.from_config(_cfg(tmp_path, dataset={"kind": "images", "root": str(tmp_path / "none")}))
    with pytest.raises(ConfigError, match="not found"):
        run_sweep(cfg, progress=False)
    assert not (cfg.output / RESULTS_FILE).exists() or (cfg.output / RESULTS_FILE).read_text() == ""


@pytest.mark.filterwarnings("ignore:optional codec")  # codecs_compare.yaml names reference encoders not built here
def test_shipped_configs_are_valid():
    configs = Path(__file__).parent.parent / "configs"
    cfg = SweepConfig.from_yaml(configs / "quickstart.yaml")
    assert min(map(len, cfg.qps.values())) >= 5 and set(cfg.qps) == {"feature", "remote"}
    assert cfg.codecs == ("x265",)
    for path in configs.glob("*.yaml"):
        if path.name.startswith("train_"):  # training configs (fcm train): tests/test_train.py checks them
            continue
        if path.name.startswith("video_"):  # video sweeps (fcm video-sweep)
            from fcm.eval.video_sweep import VideoSweepConfig

            VideoSweepConfig.load(path)
            continue
        if path.name.startswith("rdo_"):  # fixed-map configs (fcm rdo-weights)
            from fcm.rdo.config import RdoWeightsConfig

            RdoWeightsConfig.from_yaml(path)
            continue
        SweepConfig.from_yaml(path)  # names, splits, codecs, QPs and anchors all check out


# ---------------------------------------------------------------- sweeps


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    from fcm.eval.sweep import run_sweep

    tmp = tmp_path_factory.mktemp("full")
    cfg = SweepConfig.from_config(_cfg(tmp))
    outcome = run_sweep(cfg, progress=False)
    return cfg, outcome


def _canon(records):
    return sorted(json.dumps({k: v for k, v in r.items() if k != "times"}, sort_keys=True) for r in records)


def test_sweep_records_every_point(full_run):
    cfg, outcome = full_run
    assert outcome.complete
    # 4 inputs × (1 reference + 2 pipelines × 1 codec × 2 QPs)
    assert len(outcome.records) == 4 * 5
    lines = (cfg.output / "results.jsonl").read_text().splitlines()
    assert len(lines) == 20
    assert {p.curve for p in outcome.points} == {"feature/x265", "remote/x265"}
    assert outcome.reference["top1_agreement"] == 100.0
    for p in outcome.points:
        assert p.num_inputs == 4 and 0 <= p.metric <= 100
        recs = [r for r in outcome.records if (r["pipeline"], r["codec"], r["qp"]) == (p.pipeline, p.codec, p.qp)]
        assert p.bits == sum(r["bits"] for r in recs)
    by = {(p.pipeline, p.qp): p for p in outcome.points}
    assert by[("feature", 27)].bits > by[("feature", 37)].bits
    assert by[("remote", 27)].bits > by[("remote", 37)].bits


def test_feature_bits_count_every_byte_of_the_bitstream(full_run):
    """Re-encode one input: the record's bits are 8 × the whole fcm bitstream, container included."""
    from fcm import pipeline
    from fcm.codecs import CodecParams
    from fcm.data import build_dataset
    from fcm.models import get_model

    cfg, outcome = full_run
    sample = build_dataset(cfg.dataset)[0]
    model = get_model("efficientnet_lite0", "stage4")
    enc = pipeline.encode(sample.image(), model, "x265", CodecParams(27, preset="ultrafast"))
    rec = next(r for r in outcome.records if (r["pipeline"], r["qp"], r["input"]) == ("feature", 27, sample.id))
    assert rec["bits"] == 8 * len(enc.bitstream)
    assert rec["pixels"] == sample.image().shape[0] * sample.image().shape[1]


@pytest.mark.parametrize("stop_after", [3, 11])
def test_killed_sweep_resumes_to_identical_records(tmp_path, full_run, stop_after):
    from fcm.eval.sweep import run_sweep

    _, full = full_run
    cfg = SweepConfig.from_config(_cfg(tmp_path))
    first = run_sweep(cfg, progress=False, max_new_records=stop_after)
    assert not first.complete and first.new_records == stop_after
    # a kill can also leave half a line behind
    with open(cfg.output / "results.jsonl", "a") as f:
        f.write('{"pipeline": "feat')
    second = run_sweep(cfg, progress=False)
    assert second.complete and second.new_records == len(full.records) - stop_after
    assert _canon(second.records) == _canon(full.records)
    on_disk = [json.loads(line) for line in (cfg.output / "results.jsonl").read_text().splitlines()]
    assert _canon(on_disk) == _canon(full.records)
    third = run_sweep(cfg, progress=False)
    assert third.new_records == 0


def test_resume_refuses_a_different_sweep(tmp_path, full_run):
    from fcm.eval.sweep import run_sweep

    cfg, _ = full_run
    other = SweepConfig.from_config(_cfg(tmp_path, output=str(cfg.output), split="stage3"))
    with pytest.raises(ConfigError, match=r"different sweep.*split"):
        run_sweep(other, progress=False)


def test_a_misspelt_preset_is_refused_before_any_folder_is_made(tmp_path):
    from fcm.eval.video_sweep import VideoSweepConfig, run_video_sweep

    with pytest.raises(ConfigError, match=r"codec 'x265' has no preset 'mediun'; did you mean 'medium'\?"):
        SweepConfig.from_config(_cfg(tmp_path, preset="mediun"))
    video = VideoSweepConfig.from_config(
        {"sequences": ["clip:coffee:2"], "codecs": ["x265"], "qps": [32], "preset": "mediun", "output": str(tmp_path)}
    )
    with pytest.raises(ConfigError, match="did you mean 'medium'"):
        run_video_sweep(video, progress=False)
    assert not (tmp_path / "run").exists() and not any(tmp_path.iterdir())


def test_a_folder_of_another_sweep_is_refused_unless_merged(tmp_path, full_run):
    """Same settings, other config (name): its points would silently join the folder and replace its report."""
    import shutil

    from fcm.eval.sweep import read_records, run_sweep

    cfg, full = full_run
    folder = tmp_path / "copy"
    shutil.copytree(cfg.output, folder)
    other = SweepConfig.from_config(_cfg(tmp_path, name="other", output=str(folder), qps=[32]))
    with pytest.raises(
        ConfigError, match=r"holds the results of sweep 't', not of this config's sweep 'other'.*--merge"
    ):
        run_sweep(other, progress=False)
    assert len(read_records(folder / "results.jsonl")) == len(full.records)  # nothing was added
    merged = run_sweep(other, progress=False, merge=True)
    assert merged.new_records == 2 * 4  # QP 32 of both pipelines on the 4 inputs, nothing else remeasured
    # the folder stays sweep 't': its name is kept, so its own config resumes it and its report keeps its title
    assert json.loads((folder / "sweep.json").read_text())["name"] == "t" and merged.name == "t"
    assert run_sweep(SweepConfig.from_config(_cfg(tmp_path, output=str(folder))), progress=False).new_records == 0
    # settings that differ are refused whatever the name: no --merge suggested where it could not help
    changed = SweepConfig.from_config(_cfg(tmp_path, name="other", output=str(folder), preset="fast"))
    with pytest.raises(ConfigError, match=r"holds results of sweep 't' \(differs in preset\)") as info:
        run_sweep(changed, progress=False, merge=True)
    assert "--merge" not in str(info.value)


def test_parallel_sweep_gives_the_same_records(tmp_path, full_run):
    from fcm.eval.sweep import run_sweep

    _, full = full_run
    cfg = SweepConfig.from_config(_cfg(tmp_path))
    outcome = run_sweep(cfg, jobs=2, progress=False)
    # every process runs torch with the config's torch_threads: the records are the same to the bit, times aside
    assert _canon(outcome.records) == _canon(full.records)


def test_report_from_results_folder(full_run):
    from fcm.eval.run import report_folder

    cfg, _ = full_run
    out = report_folder(cfg.output)
    for key in ("summary_csv", "report_md", "report_json", "rd_plot"):
        assert Path(out["report"][key]).is_file()
    md = Path(out["report"]["report_md"]).read_text()
    assert "remote/x265" in md and "BD" in md
    # per-input records behind every point: bootstrap intervals, and the edge's cost per point
    doc = json.loads(Path(out["report"]["report_json"]).read_text())
    assert doc["bootstrap"]["resamples"] == 1000
    for p in doc["points"]:
        assert p["metric_ci"]["lo"] <= p["metric"] <= p["metric_ci"]["hi"]
        if p["pipeline"] == "feature":
            assert p["edge_macs"] == 157_260_992 and p["edge_params"] == 253_984  # Lite0 up to stage4
            assert p["edge_seconds"] == pytest.approx(sum(p["times"][s] for s in ("front", "pack", "encode")))
        else:
            assert p["edge_macs"] == 0 and p["edge_seconds"] == pytest.approx(p["times"]["encode"])
    assert "## Edge cost" in md and "| `feature/x265` | 27 |" in md and "157.3 M" in md
    assert "- `remote`: the picture itself, coded as `yuv420p10` (full range, BT.601; exact numpy conversion)" in md
    assert Path(out["report"]["edge_plot"]).is_file()


def test_each_pipeline_sweeps_its_own_qps(tmp_path):
    from fcm.eval.sweep import plan

    cfg = SweepConfig.from_config(_cfg(tmp_path, qps={"feature": [32, 42], "remote": [12, 17, 22]}))
    keys = {(k.pipeline, k.qp) for _, ks in plan(cfg, ["a"], set()) for k in ks}
    assert keys == {
        ("uncompressed", 0),
        ("feature", 32),
        ("feature", 42),
        ("remote", 12),
        ("remote", 17),
        ("remote", 22),
    }
    assert cfg.resolved()["pipelines"] == {
        "feature": {"qps": [32, 42]},
        "remote": {"qps": [12, 17, 22], "format": "yuv420p10", "range": "full"},
    }
    assert SweepConfig.from_config({**_cfg(tmp_path), **cfg.resolved()}).qps == cfg.qps  # the manifest reloads


def test_detection_fidelity_evaluator():
    from fcm.data import Sample
    from fcm.eval.evaluators import DetectionFidelity

    s = Sample("x", lambda: np.zeros((8, 8, 3), np.uint8))
    ref = [
        {
            "boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0], [70.0, 5.0, 90.0, 30.0]]),
            "labels": torch.tensor([1, 3]),
            "scores": torch.tensor([0.9, 0.8]),
        }
    ]
    ev = DetectionFidelity()
    ev.process(s, ref, ref)
    assert ev.evaluate()["mAP"] == pytest.approx(100.0)
    ev.reset()
    ev.process(s, [{k: v[:1] for k, v in ref[0].items()}], ref)  # one of two objects found
    assert 0 < ev.evaluate()["mAP"] < 100


def test_remote_pipeline_codes_the_image(chelsea):
    from fcm.codecs import CodecParams, get_codec
    from fcm.codecs.color import DEFAULT_FORMAT, PictureFormat
    from fcm.errors import CodecError

    odd = chelsea[:299, :451]
    sizes = []
    x265 = get_codec("x265")
    for qp in (22, 37):
        enc = x265.encode_image(odd, CodecParams(qp, preset="ultrafast"))
        dec = x265.decode_image(enc)
        assert dec.shape == odd.shape and dec.dtype == np.uint8
        psnr = 10 * np.log10(255**2 / np.mean((dec.astype(float) - odd) ** 2))
        assert psnr > (35 if qp == 22 else 28)
        sizes.append(enc.num_bytes)
    assert sizes[0] > sizes[1]
    eight_bit = PictureFormat.parse("yuv420p")
    for name, fmt in (("x264", DEFAULT_FORMAT), ("svtav1", DEFAULT_FORMAT), ("vp9", eight_bit)):
        codec = get_codec(name)
        assert (
            codec.codes_images and codec.decode_image(codec.encode_image(odd, CodecParams(30), fmt)).shape == odd.shape
        )
    with pytest.raises(CodecError, match="does not support 10-bit"):
        get_codec("vp9").encode_image(odd, CodecParams(30))  # this libvpx build has no high bit depth
    damaged = x265.encode_image(odd, CodecParams(30))
    with pytest.raises(CodecError):
        x265.decode_image(
            type(damaged)(
                damaged.codec, damaged.width, damaged.height, damaged.bit_depth, 1, b"", (damaged.packets[0][:40],)
            )
        )


def test_coco_detection_sweep_end_to_end(tmp_path):
    """A detector sweep on a COCO folder whose ground truth is the uncompressed model's own top detections.

    The uncompressed reference must then score mAP 100 through the whole chain (dataset ids, xyxy → xywh boxes,
    category ids, pycocotools), and lossless feature coding (ffv1: only the 10-bit quantization) close to it, so a
    wiring error cannot pass. A second sweep runs the remote pipeline with the same detector and evaluator.
    """
    from PIL import Image

    from fcm.eval.sweep import run_sweep
    from fcm.models import get_model

    options = {"min_size": 128, "max_size": 160, "box_score_thresh": 0.0}
    torch.manual_seed(3)
    model = get_model("faster_rcnn_r50_fpn", "fpn", **options)
    weights = tmp_path / "frcnn.pth"
    torch.save(model.net.state_dict(), weights)

    images = tmp_path / "img"
    images.mkdir()
    rng = np.random.default_rng(0)
    entries, anns, outputs = [], [], {}
    for i in (1, 2):
        pixels = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"{i}.png")
        entries.append({"id": i, "file_name": f"{i}.png", "width": 128, "height": 96})
        (outputs[i],) = model.full(model.prepare(pixels))
    # ground truth: every detection above one score shared by all images, so no lower-scored detection of any image
    # can rank before a ground-truth one (COCO ranks detections across images)
    threshold = torch.cat([d["scores"] for d in outputs.values()]).sort(descending=True).values[20].item()
    for i, det in outputs.items():
        keep = det["scores"] > threshold
        for box, label in zip(det["boxes"][keep].tolist(), det["labels"][keep].tolist()):
            x0, y0, x1, y1 = box
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": int(label),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": c, "name": model.categories[c]} for c in sorted({a["category_id"] for a in anns})]
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps({"images": entries, "annotations": anns, "categories": categories}))
    raw = _cfg(
        tmp_path,
        dataset={"kind": "coco", "images": str(images), "annotations": str(ann)},
        model="faster_rcnn_r50_fpn",
        split="fpn",
        weights=str(weights),
        evaluator="coco",
        qps=[22, 51],
        codecs=["x265", "ffv1"],
        pipelines=["feature"],
        model_options=options,
    )
    outcome = run_sweep(SweepConfig.from_config(raw), progress=False)
    assert outcome.complete and len(outcome.records) == 2 * (1 + 2 * 2)
    assert outcome.reference["mAP"] == pytest.approx(100.0)
    by = {(p.codec, p.qp): p for p in outcome.points}
    # mAP is not a mean over inputs; the feature PSNR of the decoded split tensors is, and ranks the codecs smoothly
    assert set(by[("x265", 22)].metrics) == {"mAP", "AP50", "AP75", "feature_psnr"}
    assert by[("ffv1", 22)].metrics["feature_psnr"] > by[("x265", 22)].metrics["feature_psnr"]
    assert by[("x265", 22)].metrics["feature_psnr"] > by[("x265", 51)].metrics["feature_psnr"] > 0
    # lossless coding leaves only the 10-bit quantization: the detections barely move (measured 95.8); this random
    # detector's near-equal scores make it fragile, so lossy x265 falls fast (17.6 at QP 22, 6.8 at QP 51)
    assert by[("ffv1", 22)].metric > 90
    assert by[("x265", 51)].metric < by[("x265", 22)].metric
    # mAP is resampled through the per-image COCO matching: all images once give the point's own mAP back
    for point in outcome.points:
        assert point.samples.statistic is not None and point.samples.scores is None
        assert point.samples.statistic(np.ones((1, 2)))[0] == pytest.approx(point.metric, abs=1e-9)

    remote = run_sweep(
        SweepConfig.from_config(
            {**raw, "codecs": ["x265"], "qps": [22], "pipelines": ["remote"], "output": str(tmp_path / "remote")}
        ),
        progress=False,
    )
    (point,) = remote.points
    assert point.curve == "remote/x265" and point.bits > 0 and 0 <= point.metric <= 100
    assert set(point.metrics) == {"mAP", "AP50", "AP75"}


def test_bad_embedded_dataset_arguments():
    with pytest.raises(ConfigError, match="photos must be a list"):
        EmbeddedPhotos(photos="chelsea")
    with pytest.raises(ConfigError, match="variants must be"):
        EmbeddedPhotos(variants=0)


def test_failed_start_leaves_the_folder_usable(tmp_path):
    """A sweep that fails validation writes nothing, so the corrected config can use the same folder."""
    from fcm.eval.sweep import run_sweep

    bad = SweepConfig.from_config(_cfg(tmp_path, dataset={"kind": "images", "root": str(tmp_path / "none")}))
    with pytest.raises(ConfigError):
        run_sweep(bad, progress=False)
    assert not (tmp_path / "run" / "sweep.json").exists()
    good = SweepConfig.from_config(
        _cfg(
            tmp_path, qps=[37], pipelines=["feature"], dataset={"kind": "embedded", "photos": ["coffee"], "variants": 1}
        )
    )
    assert run_sweep(good, progress=False).complete


def test_results_file_repairs_and_duplicates(tmp_path):
    from fcm.eval.sweep import read_records

    path = tmp_path / "results.jsonl"
    rec = {"pipeline": "feature", "codec": "x265", "qp": 22, "input": "a", "bits": 8}
    dup = {**rec, "bits": 16}
    other = {**rec, "input": "b"}
    path.write_text(json.dumps(rec) + "\n" + json.dumps(dup) + "\n" + json.dumps(other))  # no final newline
    records = read_records(path)
    assert [r["bits"] for r in records] == [16, 8]  # last one wins
    assert not path.read_text().endswith("\n")  # reading alone (as `fcm report` does) changes nothing
    read_records(path, repair=True)
    assert path.read_text().endswith("\n")
    with open(path, "a") as f:
        f.write('{"pipeline": "fea')  # half a line from a kill
    assert len(read_records(path)) == 2
    assert len(read_records(path, repair=True)) == 2 and path.read_text().endswith("\n")
    path.write_text(json.dumps(rec) + "\nnot json\n" + json.dumps(other) + "\n")
    with pytest.raises(ConfigError, match="line 2"):
        read_records(path)


def test_two_sweeps_cannot_write_one_folder(tmp_path):
    import fcntl

    from fcm.eval.sweep import LOCK_FILE, run_sweep

    cfg = SweepConfig.from_config(_cfg(tmp_path))
    cfg.output.mkdir(parents=True)
    with open(cfg.output / LOCK_FILE, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match="another sweep"):
            run_sweep(cfg, progress=False)


def test_report_respects_the_sweep_limit(tmp_path):
    """`fcm report` summarises the same inputs as the sweep did, even when the folder holds more records."""
    from fcm.eval.run import report_folder
    from fcm.eval.sweep import run_sweep

    raw = _cfg(tmp_path, qps=[37], pipelines=["feature"])
    run_sweep(SweepConfig.from_config(raw), progress=False)
    limited = SweepConfig.from_config({**raw, "limit": 1})
    outcome = run_sweep(limited, progress=False)
    assert {p.num_inputs for p in outcome.points} == {1}
    report_folder(limited.output)
    points = json.loads((limited.output / "report.json").read_text())["points"]
    assert {p["num_inputs"] for p in points} == {1}


def test_other_weights_at_the_same_path_are_another_sweep(tmp_path):
    import torchvision

    from fcm.eval.sweep import run_sweep

    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    raw = _cfg(
        tmp_path,
        model="resnet18",
        split="layer3",
        weights=str(weights),
        qps=[37],
        pipelines=["feature"],
        dataset={"kind": "embedded", "photos": ["coffee"], "variants": 1},
    )
    assert run_sweep(SweepConfig.from_config(raw), progress=False).complete
    torch.save(torchvision.models.resnet18().state_dict(), weights)  # new random weights, same file name
    with pytest.raises(ConfigError, match="weights_tag"):
        run_sweep(SweepConfig.from_config(raw), progress=False)


def test_unknown_model_options_fail_before_work(tmp_path):
    from fcm.eval.sweep import run_sweep

    with pytest.raises(ConfigError, match="takes no options"):
        run_sweep(SweepConfig.from_config(_cfg(tmp_path, model_options={"min_size": 3})), progress=False)
    assert not (tmp_path / "run").exists()


def test_coco_mask_ap_for_instance_segmentation(tmp_path):
    """Mask AP through pycocotools: exact masks score 100, a mask covering half the object scores less."""
    from fcm.data import Sample
    from fcm.eval.evaluators import CocoMAP

    gt = {
        "images": [{"id": 1, "file_name": "1.png", "width": 64, "height": 48}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [8, 8, 32, 24],
                "area": 768,
                "iscrowd": 0,
                "segmentation": [[8, 8, 40, 8, 40, 32, 8, 32]],
            }
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(gt))
    sample = Sample("1", lambda: np.zeros((48, 64, 3), np.uint8), image_id=1)

    def output(x1):
        masks = torch.zeros(1, 1, 48, 64)
        masks[0, 0, 8:32, 8:x1] = 0.9
        return [
            {
                "boxes": torch.tensor([[8.0, 8.0, float(x1), 32.0]]),
                "labels": torch.tensor([1]),
                "scores": torch.tensor([0.9]),
                "masks": masks,
            }
        ]

    ev = CocoMAP(ann, masks=True)
    ev.process(sample, output(40))
    m = ev.evaluate()
    assert m["mAP"] == pytest.approx(100.0) and m["mask_mAP"] == pytest.approx(100.0)
    ev.reset()
    ev.process(sample, output(24))  # half the object
    m = ev.evaluate()
    assert m["mask_AP50"] == pytest.approx(100.0) and m["mask_mAP"] < 30  # IoU 0.5 passes only the first threshold
    del gt["annotations"][0]["segmentation"]
    ann.write_text(json.dumps(gt))
    with pytest.raises(ConfigError, match="segmentation"):
        CocoMAP(ann, masks=True)


def test_the_front_runs_once_per_input_in_a_sweep(tmp_path):
    """However many feature points an input has, its edge half runs once (and the reference once)."""
    from fcm.eval.sweep import PointKey, Worker

    worker = Worker(SweepConfig.from_config(_cfg(tmp_path, qps=[27, 32, 37], codecs=["x265", "x264"])))
    calls = {"front": 0}
    front = worker.model.front

    def counting_front(inputs):
        calls["front"] += 1
        return front(inputs)

    worker.model.front = counting_front
    records = []
    keys = [PointKey("feature", c, q) for c in ("x265", "x264") for q in (27, 32, 37)]
    worker.run_input(0, keys, records.append)
    # one inference, plus one pass that counts the edge's MACs for this input size (cached: a rerun adds no count)
    assert len(records) == 6 and calls["front"] == 2
    worker.run_input(0, keys[:1], records.append)
    assert calls["front"] == 3
    assert {r["edge"]["macs"] for r in records} == {157_260_992}  # EfficientNet-Lite0 up to stage4 at 224²
    assert len({r["bits"] for r in records}) == 6  # six different operating points from one front output


@pytest.mark.parametrize(
    "bad", [{"dataset": {"kind": "images", "root": "no/such/folder"}}, {"model_options": {"min_size": 3}}]
)
def test_a_config_or_dataset_error_creates_no_output_folder(tmp_path, bad):
    from fcm.eval.run import run_and_report

    with pytest.raises(ConfigError):
        run_and_report(
            SweepConfig.from_config(_cfg(tmp_path, output=str(tmp_path / "a" / "run"), **bad)), progress=False
        )
    assert not (tmp_path / "a").exists()


def _folder_with_a_corrupt_image(tmp_path: Path) -> Path:
    from PIL import Image

    from fcm.images import bundled_photo

    folder = tmp_path / "images"
    folder.mkdir()
    for name, (top, left) in {"a": (0, 0), "c": (100, 150)}.items():
        Image.fromarray(bundled_photo("chelsea")[top : top + 96, left : left + 128]).save(folder / f"{name}.png")
    (folder / "b.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    return folder


def test_an_unreadable_input_stops_the_sweep_and_says_how_to_skip_it(tmp_path):
    from fcm.eval.sweep import run_sweep

    raw = _cfg(
        tmp_path,
        dataset={"kind": "images", "root": str(_folder_with_a_corrupt_image(tmp_path))},
        qps=[37],
        pipelines=["feature"],
    )
    with pytest.raises(
        ConfigError,
        match=r"^input b: cannot read image .*b\.jpg.*; to leave unreadable inputs out "
        r"of the sweep, set skip_unreadable: true in the config$",
    ):
        run_sweep(SweepConfig.from_config(raw), progress=False)


def test_skipped_unreadable_inputs_are_recorded_and_stay_skipped(tmp_path):
    """With skip_unreadable the corrupt input is one 'skipped' record, listed in the outcome and the manifest; a
    resume and a --jobs 2 run leave out the same input; turning the option off makes the error loud again."""
    from fcm.eval.run import MANIFEST_FILE, run_and_report
    from fcm.eval.sweep import RESULTS_FILE, run_sweep

    raw = _cfg(
        tmp_path,
        dataset={"kind": "images", "root": str(_folder_with_a_corrupt_image(tmp_path))},
        qps=[37],
        pipelines=["feature"],
        skip_unreadable=True,
    )
    summary = run_and_report(SweepConfig.from_config(raw), progress=False)
    assert summary["complete"] and [s["input"] for s in summary["skipped"]] == ["b"]
    assert "cannot read image" in summary["skipped"][0]["reason"] and "\n" not in summary["skipped"][0]["reason"]
    out = tmp_path / "run"
    assert json.loads((out / MANIFEST_FILE).read_text())["skipped"] == summary["skipped"]
    lines = [json.loads(line) for line in (out / RESULTS_FILE).read_text().splitlines()]
    assert [r["input"] for r in lines if r["pipeline"] == "skipped"] == ["b"] and len(lines) == 2 * 2 + 1

    resumed = run_sweep(SweepConfig.from_config(raw), progress=False)
    assert resumed.complete and resumed.new_records == 0 and resumed.skipped == summary["skipped"]
    assert {p.num_inputs for p in resumed.points} == {2}

    parallel = run_sweep(SweepConfig.from_config({**raw, "output": str(tmp_path / "j2")}), jobs=2, progress=False)
    assert parallel.complete and parallel.skipped == summary["skipped"]
    assert _canon(parallel.records) == _canon(resumed.records)

    with pytest.raises(ConfigError, match=r"^input b: .*skip_unreadable: true"):
        run_sweep(SweepConfig.from_config({**raw, "skip_unreadable": False}), progress=False)


def test_wrapped_pipeline_in_a_sweep(tmp_path):
    """A wrapped pipeline is one more registered pipeline: its curve is named by its label, its records carry the
    pre-wrapper's cost, and another checkpoint in the same place is another sweep."""
    import torch

    from fcm.eval.sweep import run_sweep
    from fcm.models import get_model
    from fcm.wrappers import build_wrapper, save_wrapper

    model = get_model("efficientnet_lite0", "stage4")
    torch.manual_seed(0)
    wrapper = build_wrapper("channel_reduction", model.spec, channels=40, hidden=8)
    ckpt = tmp_path / "w.pt"
    save_wrapper(ckpt, wrapper, model)
    raw = _cfg(tmp_path, pipelines={"feature": {}, "wrapped[test]": {"checkpoint": str(ckpt)}}, anchor="feature/x265")
    raw["dataset"] = {"kind": "embedded", "photos": ["chelsea"], "variants": 2}
    cfg = SweepConfig.from_config(raw)
    outcome = run_sweep(cfg, progress=False)
    assert {p.curve for p in outcome.points} == {"feature/x265", "wrapped[test]/x265"}
    wrapped = [r for r in outcome.records if r["pipeline"] == "wrapped[test]"]
    feature = [r for r in outcome.records if r["pipeline"] == "feature"]
    assert len(wrapped) == len(feature) == 4 and all(r["times"]["wrap"] > 0 for r in wrapped)
    # the edge runs the front and the pre-wrapper: more MACs and parameters than the front alone
    assert all(w["edge"]["macs"] > f["edge"]["macs"] == 157_260_992 for w, f in zip(wrapped, feature, strict=True))
    with torch.no_grad():
        next(wrapper.parameters()).view(-1)[0] += 1.0
    save_wrapper(ckpt, wrapper, model)
    with pytest.raises(ConfigError, match=r"different sweep.*pipeline_identity"):
        run_sweep(SweepConfig.from_config(raw), progress=False)


def test_report_of_a_folder_from_before_pipeline_settings_says_so(tmp_path, full_run):
    """An old folder (no recorded pipeline settings) is reported without claiming today's remote format."""
    import shutil

    from fcm.eval.run import report_folder

    cfg, _ = full_run
    old = tmp_path / "old"
    shutil.copytree(cfg.output, old)
    stored = json.loads((old / "sweep.json").read_text())
    del stored["pipeline_identity"]
    (old / "sweep.json").write_text(json.dumps(stored))
    md = Path(report_folder(old)["report"]["report_md"]).read_text()
    assert "- `remote`: settings not recorded" in md and "yuv420p10" not in md


def test_a_sweep_may_add_a_pipeline_and_resume(tmp_path):
    """Records of the pipelines both runs share stay valid: adding one resumes instead of being refused."""
    from fcm.eval.sweep import run_sweep

    raw = _cfg(tmp_path, pipelines=["feature"], qps=[37])
    raw["dataset"] = {"kind": "embedded", "photos": ["chelsea"], "variants": 1}
    first = run_sweep(SweepConfig.from_config(raw), progress=False)
    second = run_sweep(SweepConfig.from_config({**raw, "pipelines": ["feature", "remote"]}), progress=False)
    assert first.new_records == 2 and second.new_records == 1 and second.complete
    stored = json.loads((Path(raw["output"]) / "sweep.json").read_text())
    assert set(stored["pipeline_identity"]) == {"feature", "remote"}
    with pytest.raises(ConfigError, match="pipeline_identity of 'remote'"):
        run_sweep(
            SweepConfig.from_config({**raw, "pipelines": {"feature": {}, "remote": {"format": "yuv444p"}}}),
            progress=False,
        )


def test_wrapped_checkpoint_checks(tmp_path):
    """A checkpoint for another split fails validation; a results folder reports without its checkpoint (the tag is
    pinned in sweep.json) and refuses to resume with other weights at the same path."""
    import torch

    from fcm.eval.run import report_folder
    from fcm.eval.sweep import load_config, run_sweep
    from fcm.models import get_model
    from fcm.wrappers import build_wrapper, save_wrapper

    stage3 = get_model("efficientnet_lite0", "stage3")
    save_wrapper(tmp_path / "s3.pt", build_wrapper("channel_reduction", stage3.spec, channels=8, hidden=4), stage3)
    with pytest.raises(ConfigError, match="trained for efficientnet_lite0/stage3, not efficientnet_lite0/stage4"):
        SweepConfig.from_config(_cfg(tmp_path, pipelines={"wrapped": {"checkpoint": str(tmp_path / "s3.pt")}}))
    model = get_model("efficientnet_lite0", "stage4")
    torch.manual_seed(0)
    wrapper = build_wrapper("channel_reduction", model.spec, channels=40, hidden=8)
    tag = save_wrapper(tmp_path / "w.pt", wrapper, model)
    raw = _cfg(tmp_path, pipelines={"wrapped[x]": {"checkpoint": str(tmp_path / "w.pt")}}, qps=[37])
    raw["dataset"] = {"kind": "embedded", "photos": ["chelsea"], "variants": 1}
    run_sweep(SweepConfig.from_config(raw), progress=False)
    out = Path(raw["output"])
    with torch.no_grad():
        next(wrapper.parameters()).view(-1)[0] += 1.0
    save_wrapper(tmp_path / "w.pt", wrapper, model)
    with pytest.raises(ConfigError, match=f"but the sweep was run with {tag}"):
        load_config(out)
    (tmp_path / "w.pt").unlink()
    md = Path(report_folder(out)["report"]["report_md"]).read_text()
    assert f"(weights {tag})" in md


def test_worker_death_message_names_the_main_guard(monkeypatch):
    import types

    from fcm.errors import worker_death_message

    script = types.ModuleType("__main__")
    script.__file__ = "/somewhere/my_sweep.py"
    monkeypatch.setitem(sys.modules, "__main__", script)
    message = worker_death_message("sweep")
    assert message.startswith("a sweep worker process died") and 'if __name__ == "__main__":' in message
    cli = types.ModuleType("__main__")
    cli.__file__ = "/site-packages/fcm/cli/__main__.py"
    monkeypatch.setitem(sys.modules, "__main__", cli)
    assert "__name__" not in worker_death_message("sweep")
