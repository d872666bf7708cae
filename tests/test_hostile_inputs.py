"""Loaders bound their work before they build (issue 22's audit, rows 3–10): each hostile file is refused quickly
with a short message naming the problem, before it can allocate, run code or expand."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fcm.errors import MAX_MESSAGE_CHARS, BitstreamError, ConfigError, WeightsError
from fcm.yaml_files import MAX_EXPANDED_NODES, read_mapping

ROOT = Path(__file__).resolve().parents[1]


def _alias_bomb(levels: int = 8, key: str = "qps") -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + f"\n{key}: *l{levels - 1}\n"


@pytest.mark.parametrize(
    "load",
    [
        lambda p: read_mapping(p, "config file"),
        lambda p: __import__("fcm.eval.config", fromlist=["SweepConfig"]).SweepConfig.from_yaml(p),
        lambda p: __import__("fcm.train.config", fromlist=["TrainConfig"]).TrainConfig.from_yaml(p),
    ],
    ids=["read_mapping", "sweep", "train"],
)
def test_an_alias_bomb_is_refused_with_a_short_message(tmp_path, load):
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())
    assert path.stat().st_size < 2000  # 9^8 = 43 M strings once expanded
    with pytest.raises(ConfigError, match="alias") as e:
        load(path)
    assert len(str(e.value)) < 400


def test_shared_aliases_within_the_bound_still_load(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {codec: x265, qps: [22, 27]}\none: *b\ntwo: {<<: *b, qps: [32]}\n")
    assert read_mapping(path, "config file")["two"] == {"codec": x265_name(), "qps": [32]}
    recursive = tmp_path / "rec.yaml"
    recursive.write_text("a: &a [1, *a]\n")
    with pytest.raises(ConfigError, match=str(MAX_EXPANDED_NODES)):
        read_mapping(recursive, "config file")


def x265_name() -> str:
    return "x265"


def test_an_oversized_settings_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("a: [" + "1," * 600_000 + "1]\n")
    with pytest.raises(ConfigError, match="more than the 1048576"):
        read_mapping(path, "config file")


def test_error_messages_quoting_a_huge_value_are_cut():
    e = ConfigError("qps must be integers, got " + repr(list(range(100_000))))
    assert len(str(e)) <= MAX_MESSAGE_CHARS + 60 and "characters cut" in str(e)
    assert str(e).startswith("qps must be integers, got [0, 1, 2")


def test_an_option_bomb_checkpoint_is_refused_before_allocating(tmp_path):
    """hidden: 300000 in a 2 KB file: compared, on the meta device, with the weights it carries, so nothing of the
    size the options claim is ever allocated."""
    from fcm.models import get_model
    from fcm.torch_files import save_mapping
    from fcm.wrappers import build_wrapper, load_wrapper
    from fcm.wrappers.checkpoint import FORMAT, checkpoint_payload

    model = get_model("efficientnet_lite0", "stage4")
    wrapper = build_wrapper("channel_reduction", model.spec, channels=8, hidden=4)
    payload = checkpoint_payload(wrapper, model)
    payload["options"] = {"channels": 8, "hidden": 300_000}
    path = tmp_path / "bomb.pt"
    save_mapping(path, FORMAT, payload)
    with pytest.raises(WeightsError, match="do not match the weights the checkpoint carries"):
        load_wrapper(path, model)
    payload["options"] = {"channels": 8, "hidden": 4}
    save_mapping(path, FORMAT, payload)
    assert load_wrapper(path, model).weights_tag == wrapper.weights_tag  # the honest file still loads


def test_weights_that_are_expanded_views_are_refused_before_building(tmp_path):
    """The meta-device comparison checks shapes; a 5 KB file whose weights are stride-0 views (``zeros(1).expand``)
    would claim any shape. Every weight must be backed by as many stored values as its shape holds."""
    from fcm.models import get_model
    from fcm.torch_files import save_mapping
    from fcm.wrappers import build_wrapper, load_wrapper
    from fcm.wrappers.checkpoint import FORMAT, checkpoint_payload

    model = get_model("efficientnet_lite0", "stage4")
    payload = checkpoint_payload(build_wrapper("channel_reduction", model.spec, channels=8, hidden=4), model)
    with torch.device("meta"):
        claimed = build_wrapper("channel_reduction", model.spec, channels=8, hidden=300_000).state_dict()
    payload["options"] = {"channels": 8, "hidden": 300_000}
    payload["state_dict"] = {k: torch.zeros(1, dtype=v.dtype).expand(v.shape) for k, v in claimed.items()}
    path = tmp_path / "views.pt"
    save_mapping(path, FORMAT, payload)
    assert path.stat().st_size < 20_000
    with pytest.raises(WeightsError, match="an expanded view, not weights"):
        load_wrapper(path, model)


def test_long_strings_behind_aliases_deep_nesting_and_non_utf8_files_are_refused(tmp_path):
    """The expansion bound counts characters too (an 8 KB string referenced 9^5 times is 470 MB of text); nesting
    PyYAML cannot compose and bytes that are not UTF-8 are one-line ConfigErrors, not tracebacks."""
    from fcm.yaml_files import CHARS_PER_NODE

    path = tmp_path / "x.yaml"
    lines = [f'l0: &l0 "{"x" * 8000}"'] + [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 6)]
    path.write_text("\n".join([*lines, "qps: *l5"]) + "\n")
    assert 9**5 < MAX_EXPANDED_NODES < 9**5 * 8000 // CHARS_PER_NODE  # the node count alone would admit it
    with pytest.raises(ConfigError, match="alias bomb") as e:
        read_mapping(path, "config file")
    assert len(str(e.value)) < 400
    path.write_text("a: " + "[" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        read_mapping(path, "config file")
    path.write_bytes(b"codec: x265\nname: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        read_mapping(path, "config file")
    path.write_text("name: " + "b" * 500_000 + "\n")  # one long value without aliases is still a settings file
    assert len(read_mapping(path, "config file")["name"]) == 500_000


def test_a_zip_bomb_rdo_map_is_refused_before_inflating(tmp_path):
    """The identity (format, layout) and the weights member's .npy header are read before anything large is
    inflated: a shape other than the layout's frame, a header claiming a huge array, a member longer than its
    header says and a map naming no layout are each refused with a message saying so."""
    import io
    import zipfile

    from fcm.rdo.fixed_map import FixedMap

    honest = FixedMap.load(ROOT / "checkpoints" / "efficientnet_lite0_stage4_kl.rdo.npz")
    h, w = honest.weights.shape
    bomb = tmp_path / "bomb.rdo.npz"
    identity = np.array(json.dumps(honest.identity))
    np.savez_compressed(bomb, weights=np.zeros((6000, 6000), np.float32), identity=identity)
    assert bomb.stat().st_size < 400_000  # 144 MB once inflated
    with pytest.raises(ConfigError, match=r"weights of shape \(6000, 6000\) \(float32\) do not match"):
        FixedMap.load(bomb)

    def members(weights_npy: bytes, ident: np.ndarray = identity) -> None:
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, ident)
        with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("identity.npy", buffer.getvalue())
            z.writestr("weights.npy", weights_npy)

    def header(shape: tuple[int, ...]) -> bytes:
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
        return buffer.getvalue()

    members(header((400_000, 400_000)) + bytes(64))  # 128 bytes claiming 596 GiB
    with pytest.raises(ConfigError, match=r"weights of shape \(400000, 400000\)"):
        FixedMap.load(bomb)
    members(header((h, w)) + bytes(4 * h * w + (64 << 20)))  # the right header, 64 MB of padding behind it
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ConfigError, match="weights member inflates to"):
        FixedMap.load(bomb)
    no_layout = {k: v for k, v in honest.identity.items() if k != "layout"}
    members(header((h, w)) + bytes(4 * h * w), np.array(json.dumps(no_layout)))
    with pytest.raises(ConfigError, match="names no layout"):
        FixedMap.load(bomb)
    lying = dict(honest.identity, layout={**honest.identity["layout"], "frame_height": 1 << 20, "frame_width": 1 << 20})
    np.savez_compressed(bomb, weights=np.zeros((4, 4), np.float32), identity=np.array(json.dumps(lying)))
    with pytest.raises(ConfigError, match="no valid frame size"):
        FixedMap.load(bomb)


def _train_detector_tool():
    spec = importlib.util.spec_from_file_location("train_detector", ROOT / "tools" / "train_detector.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Planted:
    def __reduce__(self):
        return (Path.write_text, (Path(self.target), "pwned"))


def test_a_planted_detector_resume_file_runs_no_code(tmp_path):
    tool = _train_detector_tool()
    planted = _Planted()
    planted.target = str(tmp_path / "ran")
    ckpt = tmp_path / "det.ckpt"
    torch.save({"model": planted}, ckpt)
    with pytest.raises(SystemExit, match="not a readable resume state"):
        tool.read_resume_state(ckpt)
    assert not (tmp_path / "ran").exists()
    torch.save({"model": {}, "optimizer": {}, "iteration": -5, "losses": [], "wall": 0.0}, ckpt)
    with pytest.raises(SystemExit, match="negative iteration"):
        tool.read_resume_state(ckpt)
    torch.save({"model": {}, "optimizer": {}, "iteration": 3, "losses": [0.5], "wall": 1.0}, ckpt)
    assert tool.read_resume_state(ckpt)["iteration"] == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"step": -5}, "'step' must be a non-negative integer, found -5"),
        ({"step": "7"}, "'step' must be a non-negative integer, found str"),
        ({"rng": {"torch": [1, 2], "numpy": {}, "python": [3, [], None]}}, "rng 'torch' must be a uint8 tensor"),
        ({"optimizer": [1]}, "'optimizer' must be a mapping"),
        ({"wall_seconds": float("nan")}, "'wall_seconds' must be a finite non-negative number"),
    ],
)
def test_a_damaged_trainer_state_is_refused_field_by_field(tmp_path, change, message):
    from fcm.torch_files import save_mapping
    from fcm.train.state import FORMAT, load_state

    state = {
        "config": "abc",
        "step": 3,
        "wrapper": {"w": torch.zeros(2)},
        "optimizer": {"state": {}, "param_groups": []},
        "rng": {"torch": torch.get_rng_state(), "numpy": {"bit_generator": "PCG64"}, "python": [3, [1, 2], None]},
        "wall_seconds": 1.5,
    }
    path = tmp_path / "state.pt"
    save_mapping(path, FORMAT, state)
    assert load_state(path, "abc").step == 3
    save_mapping(path, FORMAT, {**state, **change})
    with pytest.raises(WeightsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_state(path, "abc")


def test_codec_option_values_are_single_arguments(tmp_path):
    """``preset: "fast --output X"`` must reach the encoder as one argument, not three."""
    from fcm.codecs import CodecParams
    from fcm.codecs.external import ExternalCodec

    script = "import sys,json; open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))"
    codec = ExternalCodec(
        "argv-recorder",
        f'{sys.executable} -c "{script}" {{output}} --preset {{preset}}',
        pyav_decoder="hevc",
    )
    params = CodecParams(32, preset="fast --output X", options=(("tune", "psnr 'quoted' --evil"),))
    encoded = codec.encode(np.zeros((1, 64, 64), np.uint8), 8, params)
    assert json.loads(encoded.packets[0]) == ["--preset", "fast --output X", "--tune", "psnr 'quoted' --evil"]


def test_a_non_ascii_or_spaced_token_is_refused_at_start_up(tmp_path):
    from fcm.serve.auth import load_token

    for bad in ("ünïcode-token-0123456789", "a token with spaces inside"):
        path = tmp_path / "token"
        path.write_text(bad + "\n", encoding="utf-8")
        with pytest.raises(ConfigError, match="printable ASCII"):
            load_token(path)
    path.write_text("Printable-ASCII_token.0123456789~\n")
    assert load_token(path) == "Printable-ASCII_token.0123456789~"


def test_a_stream_decoding_to_non_finite_values_exits_2_on_the_command_line(tmp_path, capsys):
    """A wrapper whose post-half overflows float32 (weights ×1e38: a damaged or hostile checkpoint whose tag is its
    own) turns a valid stream into ±inf/NaN features: the library refuses them and ``fcm decode`` says so with exit
    code 2 — never ``NaN`` printed as JSON."""
    from fcm import pipeline
    from fcm.cli import main
    from fcm.codecs import CodecParams
    from fcm.images import bundled_photo
    from fcm.models import get_model
    from fcm.wrappers import build_wrapper, save_wrapper

    model = get_model("efficientnet_lite0", "stage4")
    wrapper = build_wrapper("channel_reduction", model.spec, channels=8, hidden=0)
    with torch.no_grad():
        for p in wrapper.post.parameters():
            p.mul_(1.0e38)
    checkpoint = tmp_path / "overflowing.pt"
    save_wrapper(checkpoint, wrapper, model)
    data = pipeline.encode(bundled_photo("chelsea"), model, "x265", CodecParams(37), wrapper=wrapper).bitstream
    with pytest.raises(BitstreamError, match="non-finite values in the post-wrapper's features"):
        pipeline.decode(data, model, wrapper=wrapper)
    path = tmp_path / "inf.fcm"
    path.write_bytes(data)
    assert main(["decode", str(path), "--wrapper", str(checkpoint)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "non-finite" in err and err.count("\n") == 1


def test_a_video_decoding_to_non_finite_features_is_refused(tmp_path):
    """The same overflowing post-wrapper in a video stream: the frame's decode raises a BitstreamError naming the
    frame, instead of yielding NaN outputs."""
    import io
    from fractions import Fraction

    from fcm.codecs import CodecParams
    from fcm.images import bundled_photo
    from fcm.models import get_model
    from fcm.video.pipeline import decode_video, encode_video
    from fcm.wrappers import build_wrapper

    model = get_model("efficientnet_lite0", "stage4")
    wrapper = build_wrapper("channel_reduction", model.spec, channels=8, hidden=0)
    with torch.no_grad():
        for p in wrapper.post.parameters():
            p.mul_(1.0e38)
    sink = io.BytesIO()
    frame = bundled_photo("chelsea")
    encode_video([frame, frame], model, "x265", CodecParams(37), sink, Fraction(25), wrapper=wrapper)
    _, frames = decode_video(io.BytesIO(sink.getvalue()), model, wrapper=wrapper)
    with pytest.raises(BitstreamError, match="non-finite values in frame 0's features"):
        next(frames)
