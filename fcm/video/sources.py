"""Where video frames come from: a video file (anything PyAV opens), a folder of images, or a generated clip.

Generated clips (``clip:PHOTO``) need no download: a virtual camera pans across and zooms into one of the photos that
scikit-image ships (:func:`fcm.images.bundled_photo`), the motion a hand-held or PTZ camera makes. They are
deterministic: the same name, frame count and size give the same 8-bit RGB frames on any machine (the crop windows are
exact fractions; Pillow's bilinear resampling is integer arithmetic).

Every source yields frames one at a time (``H×W×3`` ``uint8``), so memory does not grow with the sequence length.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from fcm.errors import ConfigError

#: image files a folder source reads, in name order
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_FPS = Fraction(25)
DEFAULT_CLIP_SIZE = (240, 320)  # height, width


@dataclass(frozen=True)
class VideoSource:
    """A sequence of RGB frames: ``frames()`` yields them one at a time (a new iterator each call)."""

    name: str
    fps: Fraction
    #: the number of frames ``frames()`` yields, where known before reading (``None`` for a file of unknown length)
    num_frames: int | None
    spec: str
    max_frames: int | None = None

    @property
    def labelled(self) -> bool:
        """Whether the source carries per-frame object annotations (generated ``shapes:`` clips)."""
        return self.spec.startswith("shapes:")

    def ground_truth(self) -> dict[str, Any]:
        """COCO ground truth of a labelled source: image ids 1…N in frame order, boxes and masks of what is visible."""
        from fcm.data.shapes import CATEGORIES, clip_annotations, draw_clip

        if not self.labelled:
            raise ConfigError(f"video {self.name!r} has no annotations (labelled videos: shapes:SEED[:FRAMES[:SIZE]])")
        seed, count, size = _shapes_args(self.spec[7:])
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for i, (_, labels) in enumerate(draw_clip(seed, count, _shapes_settings(size))):
            images.append({"id": i + 1, "width": size, "height": size, "file_name": f"frame{i:06d}"})
            annotations += clip_annotations(labels, i + 1, len(annotations) + 1)
        categories = [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(CATEGORIES)]
        return {"images": images, "annotations": annotations, "categories": categories}

    def frames(self) -> Iterator[np.ndarray]:
        kind, _, rest = self.spec.partition(":")
        if kind == "clip":
            photo, height, width, count = _clip_args(rest)
            yield from camera_clip(photo, count, (height, width))
        elif kind == "shapes":
            from fcm.data.shapes import draw_clip

            seed, count, size = _shapes_args(rest)
            for image, _ in draw_clip(seed, count, _shapes_settings(size)):
                yield image
        elif kind == "folder":
            yield from _folder_frames(Path(rest), self.max_frames)
        else:
            yield from _file_frames(Path(rest), self.max_frames)


def camera_clip(photo: str, frames: int, size: tuple[int, int] = DEFAULT_CLIP_SIZE) -> Iterator[np.ndarray]:
    """``frames`` RGB frames of ``size`` (height, width) filmed by a virtual camera over a bundled photo: it pans
    from the left edge to the right and back every 240 frames with a slow vertical sway, and zooms in by up to 1.5x
    and back every 120 frames. Frame ``t`` does not depend on the clip's length."""
    from PIL import Image

    from fcm.images import bundled_photo

    if frames < 1 or min(size) < 16:
        raise ConfigError(f"a clip needs at least 1 frame of at least 16x16, got {frames} of {size[1]}x{size[0]}")
    image = Image.fromarray(bundled_photo(photo))
    ph, pw = image.height, image.width
    h, w = size
    # the widest window of the output's aspect that fits at zoom 1, leaving room to pan
    base_w = min(pw * 0.7, ph * 0.9 * w / h)
    base_h = base_w * h / w
    for t in range(frames):
        phase = 2 * math.pi * t / 120
        zoom = 1.25 - 0.25 * math.cos(phase)  # 1.0 … 1.5
        win_w, win_h = base_w / zoom, base_h / zoom
        sweep = (t % 240) / 120
        progress = sweep if sweep <= 1 else 2 - sweep  # left edge to right edge and back every 240 frames
        cx = win_w / 2 + progress * (pw - win_w)
        cy = ph / 2 + 0.1 * (ph - win_h) * math.sin(phase / 2)
        # exact binary fractions: the same window everywhere
        x0, y0 = round((cx - win_w / 2) * 64) / 64, round((cy - win_h / 2) * 64) / 64
        x1, y1 = round((cx + win_w / 2) * 64) / 64, round((cy + win_h / 2) * 64) / 64
        box = (x0, y0, x1, y1)
        yield np.asarray(image.resize((w, h), Image.Resampling.BILINEAR, box=box), dtype=np.uint8)


def open_source(spec: str, max_frames: int | None = None, fps: float | None = None) -> VideoSource:
    """A video source from ``spec``:

    - ``clip:PHOTO[:FRAMES[:WIDTHxHEIGHT]]``: a generated camera clip over a bundled photo (default 300 frames of
      320x240), e.g. ``clip:astronaut:60``;
    - ``shapes:SEED[:FRAMES[:SIZE]]``: a generated *labelled* clip of shapes moving over a panning background
      (:func:`fcm.data.shapes.draw_clip`; default 120 frames of 256x256), with COCO ground truth per frame;
    - a folder: its image files in name order;
    - a file: its first video stream, decoded by PyAV (any container and codec FFmpeg reads).

    ``max_frames`` stops after that many frames; ``fps`` overrides the source's rate (clips and folders: 25).
    """
    if max_frames is not None and max_frames < 1:
        raise ConfigError(f"max_frames must be positive, got {max_frames}")
    if fps is not None and not (math.isfinite(fps) and 0 < fps <= 1000):
        raise ConfigError(f"fps must lie in (0, 1000], got {fps}")
    rate = None if fps is None else Fraction(fps).limit_denominator(1001)
    if spec.startswith("shapes:"):
        seed, count, size = _shapes_args(spec[7:])
        if max_frames is not None:
            count = min(count, max_frames)
        return VideoSource(f"shapes-{seed}-{count}-{size}", rate or DEFAULT_FPS, count, f"shapes:{seed}:{count}:{size}")
    if spec.startswith("clip:"):
        photo, height, width, count = _clip_args(spec[5:])
        if max_frames is not None:
            count = min(count, max_frames)
        return VideoSource(
            f"clip-{photo}-{count}", rate or DEFAULT_FPS, count, f"clip:{photo}:{count}:{width}x{height}"
        )
    path = Path(spec)
    if path.is_dir():
        files = _folder_files(path)
        count = len(files) if max_frames is None else min(len(files), max_frames)
        return VideoSource(path.name, rate or DEFAULT_FPS, count, f"folder:{path}", max_frames)
    if not path.is_file():
        raise ConfigError(f"no video file, folder or clip: {spec!r} (clips: clip:PHOTO[:FRAMES[:WxH]])")
    found_rate, known = _probe_file(path)
    if max_frames is not None and known is not None:
        known = min(known, max_frames)
    return VideoSource(path.stem, rate or found_rate, known, f"file:{path}", max_frames)


def _shapes_args(rest: str) -> tuple[int, int, int]:
    parts = rest.split(":")
    try:
        seed = int(parts[0])
        count = int(parts[1]) if len(parts) > 1 and parts[1] else 120
        size = int(parts[2]) if len(parts) > 2 and parts[2] else 256
    except ValueError:
        raise ConfigError(f"cannot read shapes:{rest}; write shapes:SEED[:FRAMES[:SIZE]]") from None
    if len(parts) > 3 or seed < 0 or count < 1 or not 64 <= size <= 2048:
        raise ConfigError(f"shapes:{rest}: write shapes:SEED[:FRAMES[:SIZE]], seed >= 0, frames >= 1, size 64–2048")
    return seed, count, size


def _shapes_settings(size: int) -> Any:
    from fcm.data.shapes import ShapesSettings

    return ShapesSettings.for_size(size)


def _clip_args(rest: str) -> tuple[str, int, int, int]:
    from fcm.images import BUNDLED_PHOTOS

    parts = rest.split(":")
    photo = parts[0]
    if photo not in BUNDLED_PHOTOS:
        raise ConfigError(f"unknown photo {photo!r} for a clip; known: {', '.join(BUNDLED_PHOTOS)}")
    try:
        count = int(parts[1]) if len(parts) > 1 and parts[1] else 300
        height, width = DEFAULT_CLIP_SIZE
        if len(parts) > 2:
            w_text, _, h_text = parts[2].partition("x")
            width, height = int(w_text), int(h_text)
    except ValueError:
        raise ConfigError(f"cannot read clip:{rest}; write clip:PHOTO[:FRAMES[:WIDTHxHEIGHT]]") from None
    if len(parts) > 3 or count < 1 or not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise ConfigError(f"clip:{rest}: write clip:PHOTO[:FRAMES[:WIDTHxHEIGHT]], sides 16–4096, frames >= 1")
    return photo, height, width, count


def _folder_files(path: Path) -> list[Path]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ConfigError(f"folder {path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _folder_frames(path: Path, max_frames: int | None) -> Iterator[np.ndarray]:
    from fcm.images import load_image

    size = None
    for i, file in enumerate(_folder_files(path)):
        if max_frames is not None and i >= max_frames:
            return
        frame = load_image(str(file))
        if size is None:
            size = frame.shape
        elif frame.shape != size:
            raise ConfigError(
                f"{file.name} is {frame.shape[1]}x{frame.shape[0]}, the folder's first frame "
                f"{size[1]}x{size[0]}: a video's frames share one size"
            )
        yield frame


def _probe_file(path: Path) -> tuple[Fraction, int | None]:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ConfigError(f"{path} has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or DEFAULT_FPS
            return Fraction(rate), (stream.frames or None)
    except av.FFmpegError as e:
        raise ConfigError(f"cannot open video {path}: {e}") from e


def _file_frames(path: Path, max_frames: int | None) -> Iterator[np.ndarray]:
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for i, frame in enumerate(container.decode(stream)):
                if max_frames is not None and i >= max_frames:
                    return
                yield frame.to_ndarray(format="rgb24")
    except av.FFmpegError as e:
        raise ConfigError(f"cannot decode video {path}: {e}") from e


def write_video(frames: Iterator[np.ndarray], path: str | Path, fps: Fraction = DEFAULT_FPS) -> int:
    """Write RGB frames to a lossless FFV1 ``.mkv`` (a test input, or a clip to look at); the frame count."""
    import av

    n = 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.pix_fmt = "bgr0"
        for frame in frames:
            if n == 0:
                stream.height, stream.width = frame.shape[:2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
            n += 1
        for packet in stream.encode(None):
            container.mux(packet)
    return n
