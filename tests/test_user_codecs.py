"""External codecs declared in a YAML file (how a user plugs in VTM/VVenC/HM), tested with Debian's x265 binary."""

import shutil

import numpy as np
import pytest

from fcm.cli import main
from fcm.codecs import CodecParams, codec_names, get_codec
from fcm.codecs.user_codecs import load_codec_file
from fcm.errors import ConfigError

needs_x265 = pytest.mark.skipif(shutil.which("x265") is None, reason="Debian's x265 binary is not installed")

X265_CMD = (
    "x265 --input {input} --input-res {width}x{height} --input-depth {bit_depth} --output-depth {bit_depth} "
    "--input-csp i400 --fps {fps} --frames {frames} --qp {qp} --keyint {intra_period} --no-info --log-level error "
    "--preset {preset} -o {output}"
)


@needs_x265
def test_declared_codec_round_trips_and_rate_falls(tmp_path):
    path = tmp_path / "codecs.yaml"
    path.write_text(f"my-hevc:\n  template: x265-cli\n  encoder_cmd: {X265_CMD}\n  default_preset: ultrafast\n")
    assert load_codec_file(path) == ["my-hevc"]
    assert load_codec_file(path) == []  # loading twice is harmless
    assert "my-hevc" in codec_names()
    codec = get_codec("my-hevc")
    rng = np.random.default_rng(0)
    frames = np.clip(np.cumsum(rng.normal(size=(1, 64, 96)), axis=2) * 20 + 512, 0, 1023).astype(np.uint16)
    sizes = []
    for qp in (22, 32, 42):
        enc = codec.encode(frames, 10, CodecParams(qp))
        dec = codec.decode(enc)
        assert dec.shape == frames.shape
        sizes.append(enc.num_bytes)
    assert sizes[0] > sizes[1] > sizes[2]


@needs_x265
def test_cli_uses_a_codec_file(tmp_path, capsys):
    import subprocess
    import sys

    path = tmp_path / "codecs.yaml"
    path.write_text(f"cli-hevc:\n  template: x265-cli\n  encoder_cmd: {X265_CMD}\n  default_preset: ultrafast\n")
    out = tmp_path / "a.fcm"
    assert main(["--codecs", str(path), "encode", "skimage:coffee", "--codec", "cli-hevc", "-o", str(out)]) == 0
    # a fresh process decodes only with the declaration: from --codecs, or from $FCM_CODECS
    env = {k: v for k, v in __import__("os").environ.items() if k != "FCM_CODECS"}
    cmd = [sys.executable, "-m", "fcm.cli"]
    bare = subprocess.run(cmd + ["decode", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert bare.returncode == 2 and "cli-hevc" in bare.stderr
    flag = subprocess.run(
        cmd + ["--codecs", str(path), "decode", str(out)], capture_output=True, text=True, env=env, timeout=120
    )
    assert flag.returncode == 0 and "espresso" in flag.stdout
    via_env = subprocess.run(
        cmd + ["decode", str(out)], capture_output=True, text=True, env={**env, "FCM_CODECS": str(path)}, timeout=120
    )
    assert via_env.returncode == 0 and "espresso" in via_env.stdout


@needs_x265
def test_parallel_sweep_workers_see_declared_codecs(tmp_path):
    from fcm.eval.config import SweepConfig
    from fcm.eval.sweep import run_sweep

    path = tmp_path / "codecs.yaml"
    path.write_text(f"par-hevc:\n  template: x265-cli\n  encoder_cmd: {X265_CMD}\n  default_preset: ultrafast\n")
    load_codec_file(path)
    cfg = SweepConfig.from_config(
        {
            "dataset": {"kind": "embedded", "photos": ["coffee", "rocket"], "variants": 1},
            "model": "efficientnet_lite0",
            "codecs": ["par-hevc"],
            "qps": [32],
            "pipelines": ["feature"],
            "output": str(tmp_path / "out"),
        }
    )
    assert run_sweep(cfg, jobs=2, progress=False).complete


def test_a_bad_environment_file_does_not_break_builtin_codecs(tmp_path, monkeypatch):
    import fcm.codecs.user_codecs as user_codecs

    monkeypatch.setattr(user_codecs, "_env_checked", False)
    monkeypatch.setenv("FCM_CODECS", str(tmp_path / "missing.yaml"))
    assert get_codec("x265").name == "x265"
    with pytest.raises(ConfigError, match=r"FCM_CODECS.*not found"):
        get_codec("not-declared-anywhere")


@pytest.mark.parametrize(
    "text, message",
    [
        ("x265: {template: x265-cli}\n", "already registered"),
        ("mine: {encoder_cmd: foo}\n", "'template' is required"),
        ("mine: {template: vtm, colour: red}\n", "unknown keys"),
        ("mine: {template: vvc9}\n", "unknown external codec template"),
        ("mine: {template: vtm, bit_depths: ten}\n", "bit_depths must be a list"),
        ("- just a list\n", "must hold a mapping"),
        ("mine: [unclosed\n", "not valid YAML"),
        ("mine: {template: vtm, timeout_s: abc}\n", "timeout_s must be"),
        ("mine: {template: vtm, encoder_cmd: 5}\n", "encoder_cmd must be a string"),
        ("mine: {template: vtm, qp_range: [0]}\n", "qp_range must be"),
        ("mine: {template: vtm, qp_range: [63, 0]}\n", "qp_range must be"),
        ("good: {template: vtm}\nmine: {template: vtm, input_chroma: 444}\n", "input_chroma"),
    ],
)
def test_bad_codec_files_are_rejected(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    before = codec_names()
    with pytest.raises(ConfigError, match=message):
        load_codec_file(path)
    assert codec_names() == before  # a bad file registers nothing


def test_missing_codec_file(tmp_path, capsys):
    assert main(["--codecs", str(tmp_path / "none.yaml"), "codecs"]) == 2
    assert "codec file not found" in capsys.readouterr().err


@needs_x265
@pytest.mark.filterwarnings("ignore:optional codec 'not-built'")
def test_sweep_records_external_codecs_threads_and_identity(tmp_path):
    """A sweep names each codec's threads and an external codec's command lines in its identity: a results folder
    refuses to resume with another command (e.g. other encoder settings) instead of mixing records."""
    import json
    import warnings

    from fcm.eval.config import SweepConfig
    from fcm.eval.sweep import run_sweep

    path = tmp_path / "codecs.yaml"
    path.write_text(f"id-hevc:\n  template: x265-cli\n  encoder_cmd: {X265_CMD}\n  default_preset: ultrafast\n")
    load_codec_file(path)
    raw = {
        "dataset": {"kind": "embedded", "photos": ["rocket"], "variants": 1},
        "model": "efficientnet_lite0",
        "codecs": ["x265"],
        "optional_codecs": ["id-hevc", "not-built"],
        "codec_threads": {"x265": 2},
        "qps": [32],
        "pipelines": ["feature"],
        "output": str(tmp_path / "out"),
        "bootstrap": 0,
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = SweepConfig.from_config(raw)
    assert cfg.codecs == ("x265", "id-hevc") and cfg.missing_codecs == ("not-built",)
    assert any("optional codec 'not-built' is not declared here" in str(w.message) for w in caught)
    assert cfg.codec_threads == {"x265": 2, "id-hevc": 1}
    assert run_sweep(cfg, progress=False).complete
    stored = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert stored["codec_threads"] == {"x265": 2, "id-hevc": 1}
    assert stored["codec_identity"]["x265"] == {}
    ident = stored["codec_identity"]["id-hevc"]  # the program by the sha256 of its content, wherever it lies
    assert "--preset {preset}" in ident["encoder_arguments"] and ident["encoder_program"].startswith("sha256:")
    assert stored["codecs"] == ["x265"] and stored["optional_codecs"] == ["id-hevc", "not-built"]
    from fcm.eval.sweep import load_config

    reloaded = load_config(tmp_path / "out")
    assert reloaded.codecs == cfg.codecs and reloaded.missing_codecs == ("not-built",)
    with pytest.raises(ConfigError, match="optional_codecs repeats a name"):
        SweepConfig.from_config({**raw, "optional_codecs": ["id-hevc", "id-hevc"]})
    with_threads = SweepConfig.from_config({**raw, "codec_threads": {"x265": 2, "not-built": 4}})
    assert with_threads.codec_threads == {"x265": 2, "id-hevc": 1}  # threads of a codec missing here are dropped
    with pytest.raises(ConfigError, match="codec_threads of 'x265'"):
        run_sweep(SweepConfig.from_config({**raw, "codec_threads": {"x265": 1}}), progress=False)
    from fcm.codecs import _CODECS
    from fcm.codecs.external import external_codec

    declared = _CODECS._items["id-hevc"]
    _CODECS._items["id-hevc"] = lambda: external_codec(  # the same name, another command line
        "x265-cli", name="id-hevc", encoder_cmd=X265_CMD + " --no-wpp", default_preset="ultrafast"
    )
    try:
        with pytest.raises(ConfigError, match="codec_identity of 'id-hevc'"):
            run_sweep(SweepConfig.from_config(raw), progress=False)
    finally:
        _CODECS._items["id-hevc"] = declared
    with pytest.raises(ConfigError, match="codec_threads names codecs"):
        SweepConfig.from_config({**raw, "codec_threads": {"vp9": 1}})


def test_codec_threads_reach_the_encoders():
    from fcm.codecs import set_codec_threads

    try:
        set_codec_threads({"x265": 3})
        assert get_codec("x265").threads == 3 and get_codec("x264").threads is None
        assert "pools=3" in get_codec("x265").encoder_options(10, CodecParams(30))["x265-params"]
        with pytest.raises(ValueError, match="positive integer"):
            set_codec_threads({"x265": 0})
    finally:
        set_codec_threads({})
