"""Training wrappers end to end through the real codec (fcm.train, ``fcm train``)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fcm.cli import main
from fcm.data.datasets import _EMBEDDED_PHOTOS
from fcm.errors import ConfigError
from fcm.images import BUNDLED_PHOTOS, bundled_photo
from fcm.train import TrainConfig
from fcm.train.data import EXCLUDED_PHOTOS, TRAINING_SOURCES, load_source, plan_crops, resolve_sources
from fcm.train.loop import crop_rng, evaluate, held_out_cache, load_model, read_log, train
from fcm.wrappers import build_wrapper, load_wrapper, read_checkpoint

REPO = Path(__file__).resolve().parents[1]

TINY: dict[str, Any] = {
    "wrapper": {"name": "channel_reduction", "channels": 8, "hidden": 8},
    "images": ["skimage:brick", "skimage:coins"],
    "crops_per_image": 2,
    "crop_size": [96, 200],
    "batch_size": 2,
    "steps": 4,
    "qps": [32, 42],
    "surrogate": "scaled",
}


@pytest.fixture(scope="module")
def model():
    """A model of this module's own: training freezes its parameters."""
    config = TrainConfig.from_config({**TINY, "checkpoint": "unused.pt"})
    return load_model(config)


def _config(tmp_path: Path, name: str = "w", **changes: Any) -> TrainConfig:
    return TrainConfig.from_config({**TINY, "checkpoint": str(tmp_path / name / "wrapper.pt"), **changes})


def _initial_tag(config: TrainConfig, model) -> str:
    torch.manual_seed(config.seed)
    options = {k: v for k, v in config.wrapper.items() if k != "name"}
    return build_wrapper(config.wrapper["name"], model.spec, **options).weights_tag


@pytest.mark.parametrize("surrogate", ["scaled", "ste", "noise", "proxy"])
def test_each_surrogate_trains_and_writes_a_loadable_checkpoint(tmp_path, model, surrogate):
    config = _config(tmp_path, surrogate=surrogate, steps=3, lam=0.05)
    result = train(config, progress=False, model=model)

    assert result.finished and result.steps == 3 and result.checkpoint == config.checkpoint
    rows = read_log(config.log_path)
    assert [int(r["step"]) for r in rows] == [0, 1, 2]
    assert all(math.isfinite(float(r["loss"])) and float(r["rate_bpp"]) > 0 for r in rows)
    assert all(
        math.isclose(float(r["loss"]), float(r["task_loss"]) + 0.05 * float(r["rate_bpp"]), rel_tol=1e-6) for r in rows
    )
    real = surrogate in ("scaled", "ste")
    assert all((r["real_bytes"] != "") == real for r in rows)  # bytes exactly when a real codec ran
    if real:
        assert all(int(r["real_bytes"]) > 0 for r in rows)
    if surrogate == "proxy":  # SUA temperature decays over the run
        temperatures = [float(r["temperature"]) for r in rows]
        assert temperatures[0] == 1.0 and temperatures == sorted(temperatures, reverse=True)

    assert result.weights_tag != _initial_tag(config, model)
    wrapper = load_wrapper(config.checkpoint, model)
    assert wrapper.weights_tag == result.weights_tag
    training = read_checkpoint(config.checkpoint)["training"]
    assert training["surrogate"] == surrogate and training["steps"] == 3 and training["qps"] == [32, 42]
    assert training["lam"] == 0.05 and training["codec"] == "x265" and training["preset"] == "ultrafast"
    assert training["wall_seconds"] > 0 and "fcm_version" in training


def test_feature_loss_trains(tmp_path, model):
    config = _config(tmp_path, surrogate="noise", loss="features", steps=3)
    result = train(config, progress=False, model=model)
    rows = read_log(config.log_path)
    assert result.finished and all(math.isfinite(float(r["task_loss"])) for r in rows)
    assert float(rows[0]["loss"]) == float(rows[0]["task_loss"])  # lam 0: no rate term
    assert result.weights_tag != _initial_tag(config, model)


def test_mix_loss_is_the_kl_plus_the_relative_feature_error(tmp_path, model):
    from collections import OrderedDict

    from fcm.models.base import Features
    from fcm.train.objective import feature_error, relative_feature_error

    g = torch.Generator().manual_seed(0)
    teacher = OrderedDict(stage4=torch.randn(2, 80, 4, 4, generator=g))
    student = OrderedDict(stage4=(teacher["stage4"] + 0.1 * torch.randn(2, 80, 4, 4, generator=g)).requires_grad_())
    rel = relative_feature_error(student, teacher)
    mse = feature_error(student, teacher)
    assert math.isclose(float(rel), float(mse) / float(teacher["stage4"].square().mean()), rel_tol=1e-5)
    kl = model.distill_loss(model.distill_outputs(Features(student)), model.back(Features(teacher)))
    (kl + rel).backward()
    grad = student["stage4"].grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0

    config = _config(tmp_path, surrogate="noise", loss="mix", steps=3)
    result = train(config, progress=False, model=model)
    rows = read_log(config.log_path)
    assert result.finished and all(math.isfinite(float(r["task_loss"])) and float(r["task_loss"]) > 0 for r in rows)


def test_zero_steps_saves_the_pca_start(tmp_path, model):
    from fcm.train.loop import crop_cache

    config = _config(tmp_path, surrogate="noise", loss="features", steps=0)
    result = train(config, progress=False, model=model)
    # the start is rebuilt with the threads training uses: the cached features' float sums depend on the count, and
    # this process's own count is whatever the machine (or taskset) gives it
    previous = torch.get_num_threads()
    torch.set_num_threads(config.torch_threads)
    try:
        torch.manual_seed(config.seed)
        start = build_wrapper("channel_reduction", model.spec, channels=8, hidden=8)
        start.init_from_features(crop_cache(config, model).features)
    finally:
        torch.set_num_threads(previous)
    assert result.finished and result.steps == 0 and result.weights_tag == start.weights_tag
    assert load_wrapper(config.checkpoint, model).weights_tag == result.weights_tag != _initial_tag(config, model)


def test_same_config_gives_the_same_weights_whatever_the_codec_workers(tmp_path, model):
    first = train(_config(tmp_path, "a"), progress=False, model=model)
    again = train(_config(tmp_path, "b"), progress=False, model=model)
    parallel = train(_config(tmp_path, "c", workers=2), progress=False, model=model)
    other_seed = train(_config(tmp_path, "d", seed=1), progress=False, model=model)
    assert first.weights_tag == again.weights_tag == parallel.weights_tag
    assert other_seed.weights_tag != first.weights_tag
    bytes_a = [r["real_bytes"] for r in read_log(first.log)]
    assert bytes_a == [r["real_bytes"] for r in read_log(parallel.log)]


def test_interrupted_run_resumes_to_the_uninterrupted_weights(tmp_path, model):
    # noise draws from torch's generator and the batch sampler: both must be restored for equal weights
    uninterrupted = train(_config(tmp_path, "full", surrogate="noise", save_every=1), progress=False, model=model)

    config = _config(tmp_path, "cut", surrogate="noise", save_every=3)
    stopped = train(config, progress=False, max_steps=2, model=model)
    assert not stopped.finished and stopped.steps == 2 and stopped.checkpoint is None
    assert not config.checkpoint.exists() and config.state_path.is_file()
    resumed = train(config, progress=False, model=model)

    assert resumed.finished and resumed.steps == 4
    assert resumed.weights_tag == uninterrupted.weights_tag
    assert [int(r["step"]) for r in read_log(config.log_path)] == [0, 1, 2, 3]
    assert read_log(config.log_path) != [] and load_wrapper(config.checkpoint, model).weights_tag == resumed.weights_tag


def test_resuming_with_another_config_is_refused(tmp_path, model):
    config = _config(tmp_path, "run", surrogate="noise")
    train(config, progress=False, max_steps=1, model=model)
    changed = _config(tmp_path, "run", surrogate="noise", lr=0.01)
    with pytest.raises(ConfigError, match="another training configuration"):
        train(changed, progress=False, model=model)
    # settings that do not change the result may differ
    train(
        _config(tmp_path, "run", surrogate="noise", workers=1, save_every=7), progress=False, max_steps=1, model=model
    )


def test_training_sources_exclude_every_evaluation_photo():
    names = {source.split(":", 1)[1] for source in TRAINING_SOURCES}
    assert not names & set(_EMBEDDED_PHOTOS)
    assert not names & set(BUNDLED_PHOTOS)
    assert not names & set(EXCLUDED_PHOTOS)
    assert {"motorcycle", "stereo_motorcycle", "cat"} <= set(EXCLUDED_PHOTOS)

    # by content too: no training picture is an evaluation picture, whatever its name
    from skimage import data

    left, right = data.stereo_motorcycle()[:2]
    evaluation = [bundled_photo(p) for p in _EMBEDDED_PHOTOS] + [left, right]
    for source in TRAINING_SOURCES:
        image = load_source(source)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        for photo in evaluation:
            assert image.shape[:2] != photo.shape[:2] or not np.array_equal(image, photo[:, :, :3]), source


def test_shipped_training_configs_are_valid():
    configs = sorted((REPO / "configs").glob("train_*.yaml"))
    assert configs
    from fcm.data.photos import CATALOGUE, cached_path

    fetched = all(cached_path(p, f).is_file() for p in CATALOGUE for f in p.photos)
    train_photos = {f"photo:{i}" for p in CATALOGUE if p.split == "train" for i in p.photo_ids()}
    for path in configs:
        if "photos:train" in path.read_text() and not fetched:
            with pytest.raises(ConfigError, match="run python tools/fetch_photos"):
                TrainConfig.from_yaml(path)  # refused, naming the fix, until the photos are fetched
            continue
        config = TrainConfig.from_yaml(path)
        assert config.preset == "ultrafast"
        if config.model == "faster_rcnn_lite0_fpn":  # the detector trains on generated shapes, never on photos
            assert config.sources == tuple(resolve_sources(["shapes:train:400"]))
            continue
        # the built-in sources, or train photos only (the whole split or one of its packages)
        assert config.sources == tuple(TRAINING_SOURCES) or (config.sources and set(config.sources) <= train_photos)
    wrapped = TrainConfig.from_yaml(REPO / "configs" / "train_wrapped.yaml")
    assert (wrapped.model, wrapped.split, wrapped.surrogate) == ("efficientnet_lite0", "stage4", "scaled")
    assert wrapped.wrapper == {"name": "channel_reduction", "channels": 40, "hidden": 64}


def test_default_images_are_every_training_source(tmp_path):
    config = TrainConfig.from_config({"checkpoint": str(tmp_path / "w.pt"), "wrapper": {"name": "channel_reduction"}})
    assert config.sources == tuple(TRAINING_SOURCES) and len(config.sources) >= 10
    assert config.preset == "ultrafast" and config.bit_depth is None and config.codec_bit_depth == 10


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"lam": -1}, "lam"),
        ({"lr": 0}, "lr"),
        ({"steps": -1}, "steps"),
        ({"batch_size": "8"}, "batch_size"),
        ({"surrogate": "magic"}, "surrogate"),
        ({"loss": "accuracy"}, "loss"),
        ({"qps": [30, 60]}, "qps"),
        ({"qps": []}, "qps"),
        ({"bit_depth": 12}, "bit_depth"),
        ({"images": ["skimage:astronaut"]}, "images"),
        ({"crop_size": [300, 100]}, "crop_size"),
        ({"wrapper": {"name": "nope"}}, "wrapper"),
        ({"workers": -1}, "workers"),
        ({"lerning_rate": 0.1}, "lerning_rate"),
        ({"codec": "x999"}, "codec"),
        ({"rate_model": {"name": "wavelet"}}, "rate_model"),
        ({"rate_model": {"name": "factorized", "quantizer": "dither"}}, "rate_model"),
        ({"rate_model": ["factorized"]}, "rate_model"),
        ({"rate_model_lr": 0}, "rate_model_lr"),
        ({"rate_model_lr": 10**400}, "rate_model_lr"),
        ({"lr": 10**400}, "lr"),
        ({"rate_model": {"name": "factorized", "init_scale": 10**400}}, "rate_model"),
        ({"rate_model": {"name": "factorized", "init_scale": 1e-300}}, "rate_model"),
        ({"rate_model": {"name": "factorized", "block_size": 32, "filters": [64] * 8}}, "rate_model"),
    ],
)
def test_bad_config_values_are_one_line_config_errors(tmp_path, change, key):
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, **change)
    message = str(caught.value)
    assert key in message and "\n" not in message


def test_cli_train_prints_a_summary_and_refuses_a_bad_config(tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text(json.dumps({**TINY, "surrogate": "proxy", "checkpoint": str(tmp_path / "unused.pt")}))
    out = tmp_path / "cli" / "wrapper.pt"
    assert main(["train", str(config), "--no-progress", "--steps", "2", "--output", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["checkpoint"] == str(out) and summary["steps"] == 2 and summary["finished"]
    assert summary["weights_tag"] == read_checkpoint(out)["weights_tag"]
    assert set(summary["final"]) == {"loss", "task_loss", "rate_bpp"}

    config.write_text(json.dumps({**TINY, "lam": -2, "checkpoint": str(out)}))
    assert main(["train", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fcm train: error:") and "lam" in err and "\n" not in err


def test_cli_train_reports_progress_in_lines_off_a_terminal(tmp_path, capsys):
    """A batch job's log (stderr not a terminal) gets a line as the feature cache is built and every tenth of the
    steps, not silence until the end."""
    config = tmp_path / "train.yaml"
    config.write_text(json.dumps({**TINY, "surrogate": "noise", "steps": 10, "checkpoint": str(tmp_path / "w.pt")}))
    assert main(["train", str(config)]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "fcm train: cache features: 0/4 crops"
    assert any(line.startswith("fcm train: cache features: 4/4 crops (") for line in lines)
    steps = [line for line in lines if line.startswith("fcm train: train: ")]
    assert steps[0] == "fcm train: train: 0/10 steps" and len(steps) == 11 and "10/10 steps" in steps[-1]
    assert "loss " in steps[-1]


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux) to pin a process to one core")
def test_training_gives_the_same_weights_on_one_core_as_here(tmp_path, model):
    """A fixed torch_threads gives the same floats whatever cores the process may use (one core here, OMP 1)."""
    yaml_path = tmp_path / "one_core.yaml"
    yaml_path.write_text(json.dumps({**TINY, "surrogate": "scaled", "checkpoint": str(tmp_path / "pinned.pt")}))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    core = str(min(os.sched_getaffinity(0)))  # one of the cores this process may use (CI may not hold core 0)
    command = ["taskset", "-c", core, sys.executable, "-m", "fcm.cli", "train", str(yaml_path), "--no-progress"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    here = train(_config(tmp_path, "here", surrogate="scaled"), progress=False, model=model)
    assert json.loads(proc.stdout)["weights_tag"] == here.weights_tag


def _json_objects(text: str) -> list[dict[str, Any]]:
    decoder, objects, at = json.JSONDecoder(), [], 0
    while (start := text.find("{", at)) >= 0:
        value, at = decoder.raw_decode(text, start)
        objects.append(value)
    return objects


def _torchrun(tmp_path: Path, procs: int, config: TrainConfig, **changes: Any) -> subprocess.CompletedProcess[str]:
    yaml_path = tmp_path / f"ddp{procs}.yaml"
    settings = {"surrogate": "noise", "torch_threads": config.torch_threads, "checkpoint": str(config.checkpoint)}
    yaml_path.write_text(json.dumps({**TINY, **settings, **changes}))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
    command += ["-m", "fcm.cli", "train", str(yaml_path), "--no-progress"]
    return subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)


@pytest.mark.parametrize(
    "changes", [{}, {"rate_model": {"name": "factorized", "quantizer": "ste"}, "lam": 0.05}], ids=["plain", "learned"]
)
def test_torchrun_single_process_trains_the_same_weights(tmp_path, model, changes):
    """Under DistributedDataParallel (with a learned rate model too: a second submodule of the coded path)."""
    # the child runs with OMP_NUM_THREADS=1; torch_threads fixes the float summation order in both runs
    config = _config(tmp_path, "ddp", surrogate="noise", torch_threads=2, **changes)
    proc = _torchrun(tmp_path, 1, config, **changes)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plain = train(
        _config(tmp_path, "plain", surrogate="noise", torch_threads=2, **changes), progress=False, model=model
    )
    assert json.loads(proc.stdout)["weights_tag"] == plain.weights_tag
    assert read_checkpoint(config.checkpoint)["weights_tag"] == plain.weights_tag


@pytest.mark.slow  # two processes, each loading the model: slow on a shared 2-core machine
def test_torchrun_two_processes_shard_the_batch_and_write_once(tmp_path):
    config = _config(tmp_path, "ddp2", surrogate="noise")
    proc = _torchrun(tmp_path, 2, config)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = _json_objects(proc.stdout)
    assert len(summaries) == 2 and len({s["weights_tag"] for s in summaries}) == 1  # DDP keeps the ranks equal
    tags = {s["weights_tag"] for s in summaries}
    assert read_checkpoint(config.checkpoint)["weights_tag"] in tags
    assert [int(r["step"]) for r in read_log(config.log_path)] == [0, 1, 2, 3]  # rank 0 alone logs


def test_short_training_lowers_the_loss_on_held_out_crops(tmp_path, model):
    config = _config(
        tmp_path,
        "short",
        images=["skimage:brick", "skimage:coins", "skimage:clock", "matplotlib:grace_hopper"],
        crops_per_image=4,
        batch_size=8,
        steps=30,
        lr=3e-3,
        wrapper={"name": "channel_reduction", "channels": 16, "hidden": 16},
    )
    result = train(config, progress=False, model=model)
    held_out = held_out_cache(config, model)
    training_crops = plan_crops(config.sources, config.crops_per_image, config.crop_size, crop_rng(config))
    assert len(training_crops) == 16 and not set(held_out.crops) & set(training_crops)

    torch.manual_seed(config.seed)
    initial = build_wrapper("channel_reduction", model.spec, channels=16, hidden=16)
    before = evaluate(initial, model, held_out, config)
    after = evaluate(load_wrapper(config.checkpoint, model), model, held_out, config)
    assert result.finished and after < 0.7 * before, (before, after)


def test_wrapper_and_codec_settings_fail_at_config_time(tmp_path):
    """Caught before any feature is cached: options the wrapper does not take, a wrapper with nothing to train, a
    split the model lacks, and step-based surrogates on a codec whose QP is not on the H.264/HEVC scale."""
    from fcm.errors import ConfigError
    from fcm.train.config import TrainConfig

    base = {"checkpoint": str(tmp_path / "w.pt"), "wrapper": {"name": "channel_reduction", "channels": 8}}
    for overrides, message in (
        ({"wrapper": {"name": "channel_reduction", "foo": 1}}, "unexpected keyword argument 'foo'"),
        ({"wrapper": {"name": "channel_reduction", "channels": 500}}, "would grow tensor"),
        ({"wrapper": "identity"}, "has no parameters to train"),
        ({"split": "stage9"}, "unknown split 'stage9'"),
        ({"codec": "svtav1", "qps": [40], "surrogate": "noise"}, "another QP scale"),
        ({"codec": "svtav1", "qps": [40], "surrogate": "scaled", "lam": 0.1}, "another QP scale"),
        ({"codec": "svtav1", "qps": [40], "rate_model": "factorized"}, "another QP scale"),
    ):
        with pytest.raises(ConfigError, match=message):
            TrainConfig.from_config({**base, **overrides})
    TrainConfig.from_config({**base, "codec": "svtav1", "qps": [40], "surrogate": "scaled"})  # no step involved


def test_colour_jitter_is_seeded_bounded_and_off_by_default():
    from fcm.train.data import Crop, load_source, plan_crops

    sources = ["skimage:brick", "skimage:clock"]
    plain = plan_crops(sources, 3, (96, 200), np.random.default_rng(5))
    again = plan_crops(sources, 3, (96, 200), np.random.default_rng(5), color_jitter=0.0)
    assert plain == again and all((c.brightness, c.contrast, c.saturation) == (1.0, 1.0, 1.0) for c in plain)
    jittered = plan_crops(sources, 3, (96, 200), np.random.default_rng(5), color_jitter=0.3)
    # jitter is drawn after each crop's box and flip: the first crop keeps the plain draw's box
    assert (jittered[0].top, jittered[0].left, jittered[0].side, jittered[0].flip) == (
        plain[0].top,
        plain[0].left,
        plain[0].side,
        plain[0].flip,
    )
    factors = [f for c in jittered for f in (c.brightness, c.contrast, c.saturation)]
    assert all(0.7 <= f <= 1.3 for f in factors) and len(set(factors)) == len(factors)
    assert jittered == plan_crops(sources, 3, (96, 200), np.random.default_rng(5), color_jitter=0.3)
    image = load_source("skimage:coins")
    box = Crop("skimage:coins", 10, 20, 100, False)
    assert np.array_equal(box.cut(image), image[10:110, 20:120])
    grey = Crop("skimage:coins", 10, 20, 100, False, saturation=0.0).cut(image)
    assert np.abs(grey.astype(int) - grey[..., :1].astype(int)).max() <= 1  # no saturation: grey pixels
    brighter = Crop("skimage:coins", 10, 20, 100, False, brightness=1.2).cut(image)
    assert brighter.dtype == np.uint8 and brighter.astype(float).mean() > box.cut(image).astype(float).mean()
    with pytest.raises(ConfigError, match="color_jitter"):
        plan_crops(sources, 1, (96, 200), np.random.default_rng(0), color_jitter=1.5)
    with pytest.raises(ConfigError, match="color_jitter must be below 1"):
        TrainConfig.from_config({**TINY, "checkpoint": "x.pt", "color_jitter": 1.0})


FACTORIZED = {"name": "factorized", "quantizer": "ste"}


def test_default_rate_model_keeps_the_identity_and_a_learned_one_changes_it(tmp_path):
    default = _config(tmp_path)
    assert default.rate_model == {"name": "log_magnitude"} and default.rate_model_is_default
    # the identities these configs had before rate models were selectable (resumable states and shipped tags)
    assert default.identity() == "8369f612d780ea73"
    assert _config(tmp_path, surrogate="noise", lam=0.1).identity() == "7dd75f0b45b310f2"
    assert _config(tmp_path, rate_model="log_magnitude").identity() == default.identity()
    assert _config(tmp_path, rate_model_lr=0.5).identity() == default.identity()  # unused without a learned model
    learned = _config(tmp_path, rate_model=FACTORIZED)
    assert learned.identity() != default.identity()
    assert _config(tmp_path, rate_model=FACTORIZED, rate_model_lr=0.5).identity() != learned.identity()


def test_a_learned_rate_model_is_fitted_without_touching_the_wrapper_at_lam_zero(tmp_path, model):
    """Its fit runs on detached frames and its initial weights come from a stream of their own: at λ = 0 with a
    quantizer that draws no noise, the wrapper's weights are those of a run with the default rate model (the noise
    surrogate's draws unmoved), while the rate model's bits fall as it fits in an Adam group of its own."""
    steps = {"steps": 12, "surrogate": "noise"}
    plain = train(_config(tmp_path, "plain", **steps), progress=False, model=model)
    config = _config(tmp_path, "fitted", rate_model=FACTORIZED, rate_model_lr=0.05, **steps)
    fitted = train(config, progress=False, model=model)
    assert fitted.weights_tag == plain.weights_tag
    rows = read_log(fitted.log)
    fit = [float(r["rate_fit_bpp"]) for r in rows]
    assert all(math.isfinite(v) and v > 0 for v in fit)
    same_qp = [v for v, r in zip(fit, rows, strict=True) if r["qp"] == rows[0]["qp"]]  # bits depend on the QP
    assert len(same_qp) >= 3 and same_qp[-1] < 0.8 * same_qp[0], fit
    assert all(r["rate_fit_bpp"] == "" for r in read_log(plain.log))
    state = torch.load(config.state_path, weights_only=True)
    assert state["rate_model"] and all(isinstance(v, torch.Tensor) for v in state["rate_model"].values())
    assert [g["lr"] for g in state["optimizer"]["param_groups"]][1:] == [0.05]
    plain_state = torch.load(_config(tmp_path, "plain", **steps).state_path, weights_only=True)
    assert "rate_model" not in plain_state and len(plain_state["optimizer"]["param_groups"]) == 1
    training = read_checkpoint(config.checkpoint)["training"]
    assert training["rate_model"] == FACTORIZED and training["rate_model_lr"] == 0.05


def test_a_run_with_a_learned_rate_model_resumes_to_the_uninterrupted_weights(tmp_path, model):
    """The density, its optimizer group and the noise it draws are restored along with the wrapper."""
    spec = {"name": "factorized", "quantizer": "noise"}
    common = {"surrogate": "noise", "lam": 0.05, "rate_model": spec}
    uninterrupted = train(_config(tmp_path, "full", save_every=1, **common), progress=False, model=model)
    config = _config(tmp_path, "cut", save_every=3, **common)
    train(config, progress=False, max_steps=2, model=model)
    resumed = train(config, progress=False, model=model)
    assert resumed.finished and resumed.weights_tag == uninterrupted.weights_tag
    full_log, cut_log = read_log(uninterrupted.log), read_log(config.log_path)
    assert [r["rate_fit_bpp"] for r in cut_log] == [r["rate_fit_bpp"] for r in full_log]
    assert [r["rate_bpp"] for r in cut_log] == [r["rate_bpp"] for r in full_log]


def test_fisher_pca_scales_each_coded_channel_by_its_task_weight(tmp_path, model):
    """init: fisher_pca is the PCA start with coded channel k scaled by w_k^(β/2) (geometric mean 1): the pair still
    restores what the PCA start did, the codec sees the heavier channels larger, and a larger β spreads the gains."""
    from fcm.train.loop import crop_cache, fisher_gains

    linear = {"name": "channel_reduction", "channels": 8, "hidden": 0}
    plain = train(_config(tmp_path, "pca", wrapper=linear, steps=0), progress=False, model=model)
    config = _config(tmp_path, "fisher", wrapper=linear, steps=0, init="fisher_pca", fisher_exponent=1.0)
    fisher = train(config, progress=False, model=model)
    pca_pair, fisher_pair = load_wrapper(plain.checkpoint, model), load_wrapper(fisher.checkpoint, model)
    features = crop_cache(config, model).features
    with torch.no_grad():
        restored_pca, restored_fisher = pca_pair(features), fisher_pair(features)
        (coded_pca,), (coded_fisher,) = pca_pair.encode(features).values(), fisher_pair.encode(features).values()
    for name in features:
        torch.testing.assert_close(restored_fisher[name], restored_pca[name], rtol=1e-4, atol=1e-4)
    ratio = coded_fisher.std(dim=(0, 2, 3)) / coded_pca.std(dim=(0, 2, 3))
    gains = fisher_gains(pca_pair, model, features, 1.0, config.seed)
    torch.testing.assert_close(ratio.double(), next(iter(gains.values())), rtol=1e-3, atol=1e-6)
    assert float(ratio.log().mean().exp()) == pytest.approx(1.0, rel=1e-3) and float(ratio.max() / ratio.min()) > 1.5
    # the direction: the channel the classifier is most sensitive to gets the largest gain, g = w^(β/2) / geomean
    from fcm.rdo.sensitivity import coded_channel_weights

    (w,) = coded_channel_weights(model, pca_pair, features, "kl", probes=8, seed=config.seed).values()
    expected = w.sqrt() / w.sqrt().log().mean().exp()
    torch.testing.assert_close(next(iter(gains.values())), expected, rtol=1e-9, atol=1e-12)
    assert int(ratio.argmax()) == int(w.argmax()) and int(ratio.argmin()) == int(w.argmin())
    half = next(iter(fisher_gains(pca_pair, model, features, 0.5, config.seed).values()))
    torch.testing.assert_close(half.square(), next(iter(gains.values())), rtol=1e-6, atol=1e-9)  # g(β) = w^(β/2)
    assert config.identity() != _config(tmp_path, "fisher", wrapper=linear, steps=0, init="fisher_pca").identity()
    with pytest.raises(ConfigError, match=r"fisher_exponent applies to init: fisher_pca only"):
        _config(tmp_path, fisher_exponent=1.0)
    with pytest.raises(ConfigError, match=r"fisher_exponent must be in \(0, 2\]"):
        _config(tmp_path, init="fisher_pca", fisher_exponent=3)
    with pytest.raises(ConfigError, match="not of identity"):
        fisher_gains(build_wrapper("identity", model.spec), model, features, 1.0, 0)
    with pytest.raises(ConfigError, match="scales the channels of channel_reduction"):
        _config(tmp_path, wrapper={"name": "identity"}, init="fisher_pca")
