"""Inner codecs that run user-supplied encoder/decoder binaries (VTM, VVenC, HM, the x265 CLI, …).

:class:`ExternalCodec` writes the frames as a raw planar YUV file (4:0:0, or 4:2:0 with flat mid-grey chroma;
one byte per sample at 8 bits, little-endian 16-bit words above) into a fresh temporary directory, runs the encoder
from a command template, and keeps the bitstream file it writes, byte for byte, as a single packet. Decoding runs a
decoder template that writes raw YUV, or decodes the bitstream in process with a PyAV decoder (``"hevc"``,
``"vvc"``; FFmpeg's parser splits the Annex-B stream).

Command templates are split like a shell would (:func:`shlex.split`, no shell is run) and each word is then filled
with :meth:`str.format` placeholders:

``{input}`` ``{output}``
    paths of the file the command reads and the one it must write
``{width}`` ``{height}`` ``{frames}`` ``{fps}``
    frame size, number of frames, a nominal frame rate (25)
``{bit_depth}`` ``{depth_suffix}``
    sample bit depth; ``""`` at 8 bits and ``"_10"`` at 10 (for format names such as VVenC's ``yuv420_10``)
``{chroma}``
    ``"400"`` or ``"420"``: the raw input's chroma format
``{qp}`` ``{gop}`` ``{intra_period}``
    the QP; ``"intra"`` or ``"lowdelay"``; ``1`` for all-intra, ``-1`` (one intra frame only) for low delay
``{preset}``
    ``CodecParams.preset``, or the codec's ``default_preset``
``{threads}``
    the encoder threads this process runs the codec with (:func:`fcm.codecs.set_codec_threads`; default 1)
``{qp_map}``
    path of a per-block QP-offset file (:func:`write_qp_map`) for an encoder that reads one (e.g. an HM/VTM build
    patched for wrapper-aware RDO). A template using it makes the codec accept ``block_qp_offsets`` (blocks of
    ``qp_map_block`` samples, constant-QP mode); without a map the file holds zeros.
any name in ``variables``
    e.g. ``{config}`` for the path of a VTM/HM configuration file; ``config_intra`` / ``config_lowdelay``, when
    given, become ``{config}`` for that GOP structure

``CodecParams.options`` become extra encoder arguments, each ``(key, value)`` formatted with ``option_template``
(default ``"--{key} {value}"``). Templates are split into words before they are filled in, so every value — a
preset, an option, a path — is exactly one argument whatever spaces or quotes it holds: ``preset: "fast --output
X"`` cannot add arguments. Only ``rate_control="cqp"`` is supported; per-block QP offsets only through a
``{qp_map}`` template.

Ready-made: :func:`x265_cli` (registered as ``"x265-cli"``; Debian's ``x265`` binary, decoded with PyAV's HEVC
decoder) and, through :func:`external_codec`, templates for VTM (``EncoderApp``/``DecoderApp``), VVenC
(``vvencapp``/``vvdecapp``) and HM (``TAppEncoder``/``TAppDecoder``). All four are tested for real:
``x265-cli`` with Debian's binary, the others when ``$FCM_CODECS`` declares them (``tools/build_codecs.py`` builds
VTM-23.13, VVenC 1.9.1 and HM 16.23 from source folders and writes that file; ``tests/test_external_codecs.py``).

Over 500 lines: one adapter — templates, raw YUV in and out, the bounded subprocess (a time limit, the output size
checked), QP-map files and the identity of a binary — that every external encoder (VTM, VVenC, HM, the x265 CLI)
goes through.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict

import numpy as np

from fcm.codecs.base import Codec, CodecParams, EncodedFrames, GopStructure
from fcm.codecs.ffmpeg import check_frames, check_payload_bounds, decode_bitstream
from fcm.errors import CodecError, ConfigError, ShapeError

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack is 3.11+; only read by type checkers here

__all__ = ["TEMPLATES", "ExternalCodec", "ExternalCodecOptions", "ExternalTemplate", "external_codec", "x265_cli"]

Chroma = Literal["400", "420"]

_FPS = 25
_STDERR_TAIL = 2000


@dataclass(frozen=True)
class ExternalTemplate:
    """A named set of defaults for :class:`ExternalCodec` (see :data:`TEMPLATES`)."""

    encoder_cmd: str
    decoder_cmd: str | None = None
    pyav_decoder: str | None = None
    input_chroma: Chroma = "400"
    decoded_chroma: Chroma = "400"
    default_preset: str | None = None
    option_template: str = "--{key} {value}"
    #: the GOP structures its command really produces
    gop_structures: tuple[GopStructure, ...] = ("intra", "lowdelay")
    #: the encoder's QP range (VVC: 0–63 at every bit depth fcm codes; HEVC: 0–51)
    qp_range: tuple[int, int] = (0, 51)
    tested: bool = False
    notes: str = ""


class ExternalCodec(Codec):
    """An inner codec running external binaries from command templates (see the module docstring).

    Args:
        name: registry/payload name of this codec.
        encoder_cmd: encoder command template; must write the bitstream to ``{output}``.
        decoder_cmd: decoder command template reading ``{input}`` (the bitstream) and writing raw planar YUV of the
            declared size and bit depth to ``{output}``; or None to decode with ``pyav_decoder``.
        pyav_decoder: FFmpeg decoder name for in-process decoding (e.g. ``"hevc"``, ``"vvc"``).
        input_chroma: ``"400"`` (luma only) or ``"420"`` (neutral chroma) raw input for the encoder.
        decoded_chroma: chroma format of the raw file ``decoder_cmd`` writes; only its luma is returned.
        bit_depths: accepted bit depths.
        qp_range: accepted QP range.
        default_preset: value of ``{preset}`` when ``CodecParams.preset`` is None.
        variables: extra placeholder values, e.g. ``{"config": "/opt/vtm/cfg/encoder_intra_vtm.cfg"}``; the
            built-in placeholders take precedence over same-named entries.
        option_template: how one ``CodecParams.options`` pair becomes encoder arguments.
        timeout_s: wall-clock limit for each encoder/decoder run.
        qp_map_block: block side of the ``{qp_map}`` file's offsets.

    Raises :class:`ConfigError` for an unusable configuration (no decoder, unknown chroma format).
    """

    lossless = False
    qp_offset_rate_controls = ("cqp",)

    def __init__(
        self,
        name: str,
        encoder_cmd: str,
        decoder_cmd: str | None = None,
        pyav_decoder: str | None = None,
        *,
        input_chroma: Chroma = "400",
        decoded_chroma: Chroma = "400",
        bit_depths: tuple[int, ...] = (8, 10),
        qp_range: tuple[int, int] = (0, 51),
        default_preset: str | None = None,
        variables: Mapping[str, str] | None = None,
        option_template: str = "--{key} {value}",
        timeout_s: float = 3600.0,
        qp_map_block: int = 16,
        gop_structures: tuple[GopStructure, ...] = ("intra", "lowdelay"),
    ) -> None:
        if not name:
            raise ConfigError("an external codec needs a name")
        if (decoder_cmd is None) == (pyav_decoder is None):
            raise ConfigError(f"external codec {name!r}: give exactly one of decoder_cmd and pyav_decoder")
        for label, chroma in (("input_chroma", input_chroma), ("decoded_chroma", decoded_chroma)):
            if chroma not in ("400", "420"):
                raise ConfigError(f"external codec {name!r}: {label} must be '400' or '420', not {chroma!r}")
        if any(b not in range(8, 17) for b in bit_depths) or not bit_depths:
            raise ConfigError(f"external codec {name!r}: bit depths must be within 8..16, got {bit_depths}")
        self.name = name
        self.encoder_cmd = encoder_cmd
        self.decoder_cmd = decoder_cmd
        self.pyav_decoder = pyav_decoder
        self.input_chroma: Chroma = input_chroma
        self.decoded_chroma: Chroma = decoded_chroma
        self.bit_depths = tuple(bit_depths)
        self.qp_range = qp_range
        self.default_preset = default_preset
        self.variables = dict(variables or {})
        self.option_template = option_template
        self.timeout_s = timeout_s
        if not isinstance(qp_map_block, int) or not 4 <= qp_map_block <= 128:
            raise ConfigError(f"external codec {name!r}: qp_map_block must be 4..128 samples, got {qp_map_block!r}")
        self.qp_block_sizes = (qp_map_block,)
        #: an encoder template with ``{qp_map}`` takes per-block QP offsets
        self.supports_block_qp_offsets = "{qp_map}" in encoder_cmd
        self.gop_structures = tuple(gop_structures)

    def __repr__(self) -> str:
        return f"ExternalCodec(name={self.name!r}, encoder_cmd={self.encoder_cmd!r})"

    def identity(self) -> dict[str, object]:
        """The command lines and settings, with the encoder program and any file a variable names (a .cfg) by the
        sha256 of their content: a rebuilt binary or an edited config is another codec, a moved one is not."""
        program, _, arguments = self.encoder_cmd.strip().partition(" ")
        return {
            "encoder_program": _content_tag(shutil.which(shlex.split(program)[0]) if program else None) or program,
            "encoder_arguments": arguments,
            "decoder": self.decoder_cmd or f"pyav:{self.pyav_decoder}",
            "variables": {k: _content_tag(v) or v for k, v in sorted(self.variables.items())},
            "input_chroma": self.input_chroma,
            "default_preset": self.default_preset,
            "option_template": self.option_template,
            "bit_depths": list(self.bit_depths),
            "qp_range": list(self.qp_range),
            "qp_map_block": self.qp_block_sizes[0],
            "gop_structures": list(self.gop_structures),
        }

    def check_params(self, bit_depth: int, params: CodecParams) -> None:
        super().check_params(bit_depth, params)
        if params.rate_control != "cqp":
            raise CodecError(f"external codec {self.name!r} supports only rate_control='cqp'")
        if params.gop not in self.gop_structures:
            raise CodecError(
                f"external codec {self.name!r} cannot code gop={params.gop!r} (its command codes "
                f"{', '.join(self.gop_structures)})"
            )
        # every placeholder must have a value now, not at the first encode of a sweep (e.g. no config for this GOP)
        values = self._placeholders(16, 16, 1, bit_depth, params, Path("in"), Path("out"))
        self._command(self.encoder_cmd, values | ({"qp_map": "map"} if self.supports_block_qp_offsets else {}))

    # -- command handling ---------------------------------------------------------------------------------------------

    def _placeholders(
        self,
        width: int,
        height: int,
        frames: int,
        bit_depth: int,
        params: CodecParams | None,
        input_path: Path,
        output_path: Path,
    ) -> dict[str, str]:
        values = {
            "input": str(input_path),
            "output": str(output_path),
            "width": str(width),
            "height": str(height),
            "frames": str(frames),
            "fps": str(_FPS),
            "bit_depth": str(bit_depth),
            "depth_suffix": "" if bit_depth == 8 else f"_{bit_depth}",
            "chroma": self.input_chroma,
            "threads": str(self.threads or 1),
        }
        if params is not None:
            preset = params.preset if params.preset is not None else self.default_preset
            # a per-GOP configuration file (config_intra / config_lowdelay) takes precedence over a single config
            per_gop = self.variables.get(f"config_{params.gop}")
            if per_gop is not None:
                values["config"] = per_gop
            values |= {
                "qp": str(params.qp),
                "gop": params.gop,
                "intra_period": "1" if params.gop == "intra" else "-1",
                "preset": preset or "",
            }
        return self.variables | values

    def _command(self, template: str, values: Mapping[str, str], extra: Sequence[tuple[str, str]] = ()) -> list[str]:
        try:
            # templates are split into words first and each word filled in after: a value (a preset, an option)
            # is always exactly one argument, whatever spaces or quotes it holds — never extra arguments
            words = [word.format_map(values) for word in shlex.split(template)]
            option_words = shlex.split(self.option_template)
            for key, value in extra:
                words += [word.format(key=key, value=value) for word in option_words]
        except KeyError as exc:
            raise CodecError(
                f"{self.name}: command template uses placeholder {{{exc.args[0]}}} which has no value; "
                f"pass it in variables="
            ) from None
        except ValueError as exc:
            raise CodecError(f"{self.name}: malformed command template {template!r}: {exc}") from None
        if not words:
            raise CodecError(f"{self.name}: empty command template")
        return words

    def _run(self, args: list[str], what: str, cwd: Path | None = None) -> str:
        """Run a command (in ``cwd``: the call's own temporary folder, so that files an encoder writes beside its
        output, such as a reconstruction, never land in the caller's working directory); returns the tail of its
        stderr, for errors found after it exits (x265 sometimes exits 0 on a refused input, writing nothing)."""
        binary = args[0]
        found = shutil.which(binary)
        if found is None:
            raise CodecError(f"{self.name}: {what} binary {binary!r} not found (not on PATH or not executable)")
        try:
            proc = subprocess.run(
                [found, *args[1:]],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CodecError(f"{self.name}: {what} {binary!r} timed out after {self.timeout_s:g} s") from exc
        except OSError as exc:
            raise CodecError(f"{self.name}: cannot run {what} {binary!r}: {exc}") from exc
        tail = proc.stderr.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
        if proc.returncode != 0:
            raise CodecError(f"{self.name}: {what} {binary!r} exited with status {proc.returncode}: {tail}")
        return tail

    # -- raw YUV ------------------------------------------------------------------------------------------------------

    @staticmethod
    def _raw_dtype(bit_depth: int) -> np.dtype:
        return np.dtype(np.uint8) if bit_depth <= 8 else np.dtype("<u2")

    def _write_raw(self, path: Path, frames: np.ndarray, bit_depth: int) -> None:
        dtype = self._raw_dtype(bit_depth)
        _, h, w = frames.shape
        neutral = np.full((-(-h // 2), -(-w // 2)), 1 << (bit_depth - 1), dtype=dtype)
        with path.open("wb") as f:
            for frame in frames:
                f.write(frame.astype(dtype).tobytes())
                if self.input_chroma == "420":
                    f.write(neutral.tobytes() * 2)

    def _read_raw(self, path: Path, width: int, height: int, bit_depth: int, num_frames: int) -> np.ndarray:
        dtype = self._raw_dtype(bit_depth)
        luma = width * height
        chroma = 2 * (-(-width // 2)) * (-(-height // 2)) if self.decoded_chroma == "420" else 0
        expected = num_frames * (luma + chroma) * dtype.itemsize
        size = path.stat().st_size if path.exists() else -1
        if size != expected:
            raise CodecError(
                f"{self.name}: decoder wrote {max(size, 0)} bytes of raw video, expected {expected} "
                f"({num_frames} frame(s) of {width}x{height}, {bit_depth} bits, "
                f"{self.decoded_chroma})"
            )
        data = np.fromfile(path, dtype=dtype).reshape(num_frames, luma + chroma)
        out = data[:, :luma].reshape(num_frames, height, width).astype(np.uint16)
        if int(out.max(initial=0)) >= 1 << bit_depth:
            raise CodecError(f"{self.name}: decoded samples exceed {bit_depth} bits")
        return out

    # -- the Codec interface ------------------------------------------------------------------------------------------

    def encode(
        self,
        frames: np.ndarray,
        bit_depth: int,
        params: CodecParams,
        block_qp_offsets: np.ndarray | None = None,
    ) -> EncodedFrames:
        """Run the encoder binary; the payload is one packet holding the bitstream file exactly as written.

        Raises :class:`CodecError` for unsupported settings, a missing binary, a timeout, a non-zero exit status
        (with the tail of its stderr) or a missing/empty output file.
        """
        self.check_params(bit_depth, params)
        if block_qp_offsets is not None and not self.supports_block_qp_offsets:
            raise CodecError(
                f"per-block QP offsets are not supported yet by codec {self.name!r} (its encoder template has no "
                "{qp_map} placeholder)"
            )
        frames = check_frames(frames, bit_depth)
        n, h, w = frames.shape
        block = self.qp_block_sizes[0]
        grid = (n, -(-h // block), -(-w // block))
        if self.supports_block_qp_offsets:
            offsets = np.zeros(grid, np.int32) if block_qp_offsets is None else np.asarray(block_qp_offsets)
            _check_offsets(offsets, grid, block, bit_depth)
        with tempfile.TemporaryDirectory(prefix="fcm-codec-") as tmp:
            src, dst = Path(tmp) / "input.yuv", Path(tmp) / "output.bin"
            self._write_raw(src, frames, bit_depth)
            values = self._placeholders(w, h, n, bit_depth, params, src, dst)
            if self.supports_block_qp_offsets:
                values["qp_map"] = str(write_qp_map(Path(tmp) / "qp_map.txt", offsets, block))
            said = self._run(self._command(self.encoder_cmd, values, params.options), "encoder", Path(tmp))
            if not dst.exists() or dst.stat().st_size == 0:
                said = f": {said}" if said else ""
                raise CodecError(f"{self.name}: encoder wrote no bitstream to {{output}}{said}")
            bitstream = dst.read_bytes()
        return EncodedFrames(
            codec=self.name, width=w, height=h, bit_depth=bit_depth, num_frames=n, extradata=b"", packets=(bitstream,)
        )

    def decode(self, encoded: EncodedFrames) -> np.ndarray:
        """Decode with ``pyav_decoder`` in process or with ``decoder_cmd``; raises :class:`CodecError` on failure."""
        if not isinstance(encoded, EncodedFrames):
            raise CodecError(f"{self.name}: expected EncodedFrames, got {type(encoded).__name__}")
        if encoded.codec != self.name:
            raise CodecError(f"{self.name}: payload was made by codec {encoded.codec!r}, not {self.name!r}")
        if encoded.bit_depth not in self.bit_depths:
            raise CodecError(f"{self.name}: payload declares unsupported bit depth {encoded.bit_depth}")
        if len(encoded.packets) != 1 or encoded.extradata:
            raise CodecError(
                f"{self.name}: payload must be one packet without extradata, got {len(encoded.packets)} packet(s)"
            )
        w, h, bd, n = encoded.width, encoded.height, encoded.bit_depth, encoded.num_frames
        check_payload_bounds(encoded.packets, b"", w, h, bd, n, self.name)
        if self.pyav_decoder is not None:
            return decode_bitstream(self.pyav_decoder, encoded.packets[0], w, h, bd, n, who=self.name)
        assert self.decoder_cmd is not None
        with tempfile.TemporaryDirectory(prefix="fcm-codec-") as tmp:
            src, dst = Path(tmp) / "input.bin", Path(tmp) / "output.yuv"
            src.write_bytes(encoded.packets[0])
            values = self._placeholders(w, h, n, bd, None, src, dst)
            self._run(self._command(self.decoder_cmd, values), "decoder", Path(tmp))
            return self._read_raw(dst, w, h, bd, n)


# ----------------------------------------------------------------------------------------------------------------------
# Templates
# ----------------------------------------------------------------------------------------------------------------------

#: Debian's x265 CLI, with the same settings as the in-process ``x265`` codec: constant QP, AQ/cu-tree off, equal
#: I/P QPs, no B frames, one frame thread (deterministic), no version SEI, quiet.
_X265_CLI = (
    "x265 --input {input} --input-res {width}x{height} --input-depth {bit_depth} --output-depth {bit_depth} "
    "--input-csp i400 --fps {fps} --frames {frames} --qp {qp} --keyint {intra_period} --min-keyint 1 "
    "--no-scenecut --bframes 0 --aq-mode 0 --no-cutree --ipratio 1 --pbratio 1 --frame-threads 1 "
    "--lookahead-slices 0 --no-info --no-progress --log-level error --preset {preset} --output {output}"
)

#: Common VTM/HM arguments: 4:0:0 in and coded, the given bit depth throughout, padding to the minimum CU size
#: signalled by a conformance window. ``{config}`` must name a configuration file (e.g. VTM's
#: ``cfg/encoder_intra_vtm.cfg`` or ``cfg/encoder_lowdelay_P_vtm.cfg``).
_JVET_ARGS = (  # "-o ''": no reconstruction file (the CTC configs ask for rec.yuv)
    "-c {config} -i {input} -b {output} -o '' -wdt {width} -hgt {height} -fr {fps} -f {frames} -q {qp} "
    "--InputBitDepth={bit_depth} --InternalBitDepth={bit_depth} --OutputBitDepth={bit_depth} "
    "--InputChromaFormat=400 --ChromaFormatIDC=400 --IntraPeriod={intra_period} --ConformanceWindowMode=1"
)

TEMPLATES: dict[str, ExternalTemplate] = {
    "x265-cli": ExternalTemplate(
        encoder_cmd=_X265_CLI,
        pyav_decoder="hevc",
        default_preset="medium",
        tested=True,
        notes="Debian's x265 (3.5 in bookworm): its output differs from the libx265 4.2 inside PyAV, and it needs "
        "pictures of at least one 64x64 CTU (the libx265 codec pads small frames itself).",
    ),
    "vtm": ExternalTemplate(
        # the all-intra CTC configuration codes every 8th frame only (TemporalSubsampleRatio 8): code them all
        encoder_cmd="EncoderApp " + _JVET_ARGS + " --TemporalSubsampleRatio=1",
        qp_range=(0, 63),
        decoder_cmd="DecoderApp -b {input} -o {output} -d {bit_depth}",
        tested=True,
        notes="Tested with VTM-23.13 (tools/build_codecs.py; tests/test_external_codecs.py): 4:0:0 at 8 and 10 bits, "
        "all-intra and low-delay P, frames below one CU, decoded by FFmpeg's 'vvc' decoder (pyav_decoder='vvc'). "
        "Pass variables config_intra / config_lowdelay (or config): paths of the CTC .cfg files.",
    ),
    "hm": ExternalTemplate(
        encoder_cmd="TAppEncoder " + _JVET_ARGS + " --Profile=main-RExt",
        decoder_cmd="TAppDecoder -b {input} -o {output} -d {bit_depth}",
        tested=True,
        notes="Tested with HM 16.23 (tools/build_codecs.py; tests/test_external_codecs.py): 4:0:0 through the "
        "main-RExt profile at 8 and 10 bits, all-intra and low-delay P, decoded by FFmpeg's 'hevc' decoder. Pass "
        "variables config_intra / config_lowdelay (or config): paths of the .cfg files.",
    ),
    "vvenc": ExternalTemplate(
        encoder_cmd=(
            "vvencapp -i {input} -s {width}x{height} -c yuv420{depth_suffix} -r {fps} -f {frames} --qp {qp} "
            "--preset {preset} --intraperiod {intra_period} --internal-bitdepth {bit_depth} --qpa 0 "
            "--threads {threads} -o {output}"
        ),
        decoder_cmd="vvdecapp -b {input} -o {output}",
        input_chroma="420",
        decoded_chroma="420",
        default_preset="medium",
        # vvencapp's easy mode has no low-delay GOP: beyond intra it codes random access (B frames, reordering)
        gop_structures=("intra",),
        qp_range=(0, 63),
        tested=True,
        notes="Tested with VVenC 1.9.1 (tools/build_codecs.py, pyav_decoder 'vvc'). vvencapp's easy mode takes only "
        "4:2:0 input (neutral chroma is written) and codes all-intra or random access, not low delay. Its perceptual "
        "QP adaptation (an XPSNR model of human vision, on by default) is turned off: feature frames are not pictures.",
    ),
}


class ExternalCodecOptions(TypedDict, total=False):
    """The keyword-only options of :class:`ExternalCodec`, as :func:`external_codec` takes them."""

    input_chroma: Chroma
    decoded_chroma: Chroma
    bit_depths: tuple[int, ...]
    qp_range: tuple[int, int]
    default_preset: str | None
    option_template: str
    timeout_s: float
    qp_map_block: int
    gop_structures: tuple[GopStructure, ...]


def _check_offsets(offsets: np.ndarray, grid: tuple[int, int, int], block: int, bit_depth: int) -> None:
    if offsets.shape != grid:
        raise ShapeError(f"block_qp_offsets must have shape {grid} (blocks of {block}x{block}), got {offsets.shape}")
    if not np.issubdtype(offsets.dtype, np.integer):
        raise CodecError(f"block_qp_offsets must be integers, got dtype {offsets.dtype}")
    qp_range = 51 + 6 * (bit_depth - 8)
    if offsets.size and int(np.abs(offsets).max()) > qp_range:
        raise CodecError(f"block_qp_offsets must lie in [-{qp_range}, {qp_range}] at {bit_depth} bits")


def write_qp_map(path: Path, offsets: np.ndarray, block: int) -> Path:
    """Write per-block QP offsets as text an encoder wrapper script can read::

        # fcm block QP offsets: frames=N rows=R cols=C block=B
        <R lines per frame, C integers each, separated by spaces; frames follow each other>

    Row ``r``, column ``c`` of frame ``n`` is the offset of the luma samples ``[r·B, (r+1)·B) × [c·B, (c+1)·B)``.
    """
    n, rows, cols = offsets.shape
    lines = [f"# fcm block QP offsets: frames={n} rows={rows} cols={cols} block={block}"]
    lines += [" ".join(str(int(v)) for v in row) for frame in offsets for row in frame]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def read_qp_map(path: Path) -> np.ndarray:
    """Inverse of :func:`write_qp_map` (for tests and for encoder wrappers written in Python)."""
    import re

    text = Path(path).read_text(encoding="ascii").splitlines()
    m = re.fullmatch(r"# fcm block QP offsets: frames=(\d+) rows=(\d+) cols=(\d+) block=(\d+)", text[0] if text else "")
    if m is None:
        raise CodecError(f"{path} is not an fcm QP map file")
    n, rows, cols = (int(m.group(i)) for i in (1, 2, 3))
    values = [[int(v) for v in line.split()] for line in text[1:]]
    if len(values) != n * rows or any(len(row) != cols for row in values):
        raise CodecError(f"{path}: expected {n * rows} rows of {cols} offsets")
    return np.array(values, dtype=np.int32).reshape(n, rows, cols)


def external_codec(
    template: str,
    *,
    name: str | None = None,
    encoder_cmd: str | None = None,
    decoder_cmd: str | None = None,
    pyav_decoder: str | None = None,
    variables: Mapping[str, str] | None = None,
    binary: str | None = None,
    decoder_binary: str | None = None,
    **kwargs: Unpack[ExternalCodecOptions],
) -> ExternalCodec:
    """Build an :class:`ExternalCodec` from one of :data:`TEMPLATES` (``"x265-cli"``, ``"vtm"``, ``"hm"``,
    ``"vvenc"``), overriding any of its parts.

    ``name`` defaults to the template's name. ``binary`` / ``decoder_binary`` replace the program (the first word)
    of the template's encoder / decoder command and keep its arguments, e.g. ``binary="/opt/vtm/bin/EncoderApp"``.
    Giving ``pyav_decoder`` replaces a template's ``decoder_cmd`` and vice versa. Other keyword arguments go to
    :class:`ExternalCodec`. Raises :class:`ConfigError` for an unknown template.
    """
    try:
        base = TEMPLATES[template]
    except KeyError:
        raise ConfigError(
            f"unknown external codec template {template!r}; known: {', '.join(sorted(TEMPLATES))}"
        ) from None
    if pyav_decoder is not None and decoder_cmd is None:
        dec_cmd, dec_av = None, pyav_decoder
    elif decoder_cmd is not None and pyav_decoder is None:
        dec_cmd, dec_av = decoder_cmd, None
    else:
        dec_cmd, dec_av = decoder_cmd or base.decoder_cmd, pyav_decoder or base.pyav_decoder
    options: ExternalCodecOptions = {
        "input_chroma": base.input_chroma,
        "decoded_chroma": base.decoded_chroma,
        "default_preset": base.default_preset,
        "option_template": base.option_template,
        "gop_structures": base.gop_structures,
        "qp_range": base.qp_range,
    }
    options.update(kwargs)
    enc_cmd = encoder_cmd or base.encoder_cmd
    if binary is not None:
        enc_cmd = _with_program(enc_cmd, binary)
    if decoder_binary is not None:
        if dec_cmd is None:
            raise ConfigError(f"codec {name or template!r}: decoder_binary needs a decoder command (not pyav_decoder)")
        dec_cmd = _with_program(dec_cmd, decoder_binary)
    return ExternalCodec(
        name or template,
        enc_cmd,
        dec_cmd,
        dec_av,
        variables=variables,
        **options,
    )


def _content_tag(path: str | None) -> str | None:
    """``sha256:<first 16 hex>`` of a file's content (``None`` unless ``path`` names a readable file)."""
    import hashlib

    if not path or not Path(path).is_file():
        return None
    try:
        return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def _with_program(command: str, program: str) -> str:
    """``command`` with its program (first word) replaced by ``program``, quoted for :func:`shlex.split`."""
    parts = command.split(None, 1)
    return shlex.quote(program) + (" " + parts[1] if len(parts) > 1 else "")


def x265_cli() -> ExternalCodec:
    """The ``"x265-cli"`` codec: Debian's ``x265`` binary on PATH, decoded in process by FFmpeg's HEVC decoder."""
    return external_codec("x265-cli")
