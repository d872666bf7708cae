"""The command line: encode → info → decode on a real photo; bad input gives one line and exit code 2."""

import json
import subprocess
import sys

import pytest

from fcm.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_encode_info_decode_round_trip(tmp_path, capsys):
    out_file = tmp_path / "cat.fcm"
    code, out, _ = _run(capsys, "encode", "skimage:chelsea", "--codec", "x265", "--qp", "32", "-o", str(out_file))
    assert code == 0
    enc = json.loads(out)
    assert enc["bytes"] == out_file.stat().st_size and enc["bpp"] == pytest.approx(8 * enc["bytes"] / (300 * 451))

    code, out, _ = _run(capsys, "info", str(out_file))
    info = json.loads(out)
    assert code == 0 and info["model"] == "efficientnet_lite0" and info["split"] == "stage4"
    assert info["bytes"]["total"] == enc["bytes"] and info["codec"] == "x265" and info["bit_depth"] == 10
    assert info["tensors"][0]["shape"] == [80, 14, 14]
    assert info["frame_size"] == [144, 112]  # H, W: 10 rows x 8 columns of 14x14 tiles, height aligned to 8

    code, out, _ = _run(capsys, "decode", str(out_file))
    dec = json.loads(out)
    assert code == 0 and len(dec["result"]["top"]) == 5
    assert "cat" in dec["result"]["top"][0]["label"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["encode", "missing.png"], "image not found"),
        (["encode", "skimage:chelsea", "--codec", "x266"], "unknown codec 'x266'"),
        (["encode", "skimage:chelsea", "--qp", "99"], "QP in [0, 51]"),
        (["encode", "skimage:chelsea", "--split", "stage9"], "unknown split 'stage9'"),
        (["encode", "skimage:chelsea", "--model", "yolo"], "unknown model 'yolo'"),
        (["decode", "missing.fcm"], "no such file"),
        (["models", "--nodes", "efficientnet_lite0"], "named splits only"),
        (["encode", "skimage:chelsea", "--sha256", "abc"], "--sha256 checks a weights file"),
        (["decode", "x.fcm", "--top-k", "0"], "must be a positive integer"),
        (["sweep", "c.yaml", "--jobs", "0"], "must be a positive integer"),
        (["sweep", "c.yaml", "--limit", "0"], "must be a positive integer"),
        (["encode", ".", "--qp", "32"], "is a folder, not an image"),
        (["encode", "skimage:chelsea", "--codec", "vtm"], "declared by a codecs file: fcm --codecs FILE"),
        (["encode", "skimage:chelsea", "--preset", "mediun"], "no preset 'mediun'; did you mean 'medium'?"),
        (["encode", "skimage:chelsea", "--torch-threads", "0"], "must be a positive integer"),
        (["encode-video", "clip:chelsea:2", "--preset", "fastt"], "did you mean 'fast'?"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_corrupt_bitstream_is_reported(tmp_path, capsys):
    path = tmp_path / "bad.fcm"
    path.write_bytes(b"FCM\x1a\x01" + b"\x00" * 20)
    code, _, err = _run(capsys, "decode", str(path))
    assert code == 2 and "fcm decode: error:" in err


def test_console_script_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fcm.cli", "codecs"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    codecs = json.loads(proc.stdout)
    assert codecs["ffv1"]["lossless"] and 10 in codecs["x265"]["bit_depths"]
    proc = subprocess.run(
        [sys.executable, "-m", "fcm.cli", "info", str(tmp_path / "x.fcm")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_wrapped_stream_on_the_command_line(tmp_path, capsys):
    """encode --wrapper writes a version-2 stream naming the wrapper; decode needs the same checkpoint."""
    import torch

    from fcm.models import get_model
    from fcm.wrappers import build_wrapper, save_wrapper

    model = get_model("efficientnet_lite0", "stage4")
    torch.manual_seed(0)
    tag = save_wrapper(tmp_path / "w.pt", build_wrapper("channel_reduction", model.spec, channels=40, hidden=8), model)
    stream = tmp_path / "cat.fcm"
    code, out, err = _run(
        capsys, "encode", "skimage:chelsea", "--qp", "32", "--wrapper", str(tmp_path / "w.pt"), "-o", str(stream)
    )
    assert code == 0, err
    assert json.loads(out)["wrapper"] == f"channel_reduction (weights {tag})"
    code, out, _ = _run(capsys, "info", str(stream))
    info = json.loads(out)
    assert info["format_version"] == 2 and info["wrapper"] == {"name": "channel_reduction", "weights": tag}
    assert info["tensors"][0]["name"] == "stage4_r" and info["tensors"][0]["shape"] == [40, 14, 14]
    code, _, err = _run(capsys, "decode", str(stream))
    assert code == 2 and "coded with wrapper channel_reduction" in err and len(err.strip().splitlines()) == 1
    code, out, _ = _run(capsys, "decode", str(stream), "--wrapper", str(tmp_path / "w.pt"))
    assert code == 0 and len(json.loads(out)["result"]["top"]) == 5


def test_warnings_are_one_line_each(tmp_path, capsys, monkeypatch):
    """A library warning reaches the user as ``fcm COMMAND: warning: …``, never Python's source-path form."""
    import warnings

    from fcm.cli import catalog

    def warn(args):
        warnings.warn("optional codec 'vtm' is not declared here: left out of the sweep", stacklevel=2)
        return {"ok": True}

    monkeypatch.setattr(catalog, "cmd_codecs", warn)
    code, out, err = _run(capsys, "codecs")
    assert code == 0 and json.loads(out) == {"ok": True}
    assert err == "fcm codecs: warning: optional codec 'vtm' is not declared here: left out of the sweep\n"


@pytest.mark.parametrize("command, resumable", [("sweep", True), ("train", True), ("codecs", False)])
def test_an_interrupt_says_whether_a_rerun_resumes(tmp_path, capsys, monkeypatch, command, resumable):
    import importlib

    module = importlib.import_module(
        {"sweep": "fcm.cli.evaluation", "train": "fcm.cli.training"}.get(command, "fcm.cli.catalog")
    )

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, f"cmd_{command}", interrupted)
    code, _, err = _run(capsys, command, *(["c.yaml"] if command != "codecs" else []))
    assert code == 130 and err.startswith(f"fcm {command}: interrupted")
    assert ("rerun the same command to resume" in err) == resumable


def test_every_argument_has_help():
    import argparse

    from fcm.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps subparsers there
    missing = [
        f"{name} {a.option_strings or a.dest}"
        for name, sub in commands.items()
        for a in sub._actions
        if a.help is None and not isinstance(a, argparse._HelpAction)
    ]
    assert not missing


def test_cli_choices_are_the_librarys_enumerations():
    """The CLI offers exactly what the library accepts (the range modes are written out there: fcm.packing imports
    torch, which building the parser must not)."""
    from fcm.cli import build_parser
    from fcm.codecs.base import GOP_STRUCTURES, RATE_CONTROLS
    from fcm.packing import RANGE_MODES
    from fcm.rdo import rdo_modes
    from fcm.rdo.settings import ROUTES
    from fcm.rdo.targets import TARGETS

    encode = build_parser()._subparsers._group_actions[0].choices["encode"]
    choices = {a.dest: tuple(a.choices) for a in encode._actions if a.choices is not None}
    assert choices["rate_control"] == RATE_CONTROLS and choices["gop"] == GOP_STRUCTURES
    assert choices["range_mode"] == RANGE_MODES
    assert set(choices["rdo"]) == set(rdo_modes()) and choices["rdo_route"] == ROUTES
    assert choices["rdo_target"] == TARGETS
