"""Per-block QP offsets delivered to libx264/libx265 as FFmpeg regions-of-interest (ROI) frame side data.

FFmpeg's libx264 and libx265 wrappers read ``AV_FRAME_DATA_REGIONS_OF_INTEREST`` side data (an array of
``AVRegionOfInterest``: ``self_size, top, bottom, left, right, qoffset.num, qoffset.den``, seven 32-bit integers) and
turn each region's ``qoffset`` (a fraction of ``qp_range = 51 + 6 * (bit_depth - 8)``) into the QP offset of the
blocks it covers; the first region covering a block wins.

PyAV cannot create side data. Two routes attach it:

* **direct** (fast): ``av_frame_new_side_data`` from the libavutil PyAV loaded, called through :mod:`ctypes` on the
  frame's ``AVFrame``; the regions are written as one numpy array. Cost grows linearly with the number of regions
  (measured: a few microseconds for a 112×144 frame, ~1 ms for 1920×1088 with one region per block).
* **addroi** (fallback): a filter graph with one ``addroi`` filter per region; each filter copies the growing array,
  so the cost grows with the square of the region count (measured: 2.2 ms for 54 regions, 0.7 s for 7,026, 2.6 s for
  14,069).

The direct route relies on the layout of PyAV's Cython ``Frame`` object (header, vtable pointer, then the
``AVFrame`` pointer), so it is enabled only for the PyAV major versions it was verified on (:data:`VERIFIED_PYAV`) and
after a self-check at first use: the pointer must lead to an ``AVFrame`` of the probe frame's size, and the side data
written must equal, byte for byte, what the ``addroi`` route writes for the same block-aligned regions. Otherwise the
filter route is used (``FCM_ROI_ROUTE=addroi`` forces it). :func:`delivery_route` says which one is active. At the
frame's right and bottom edges ``addroi`` clips a region to the frame while the direct route keeps whole blocks; the
encoders clamp both to the same blocks, so the coded bytes are the same (``tests/test_rdo.py`` checks a frame whose
size is not a multiple of 16).
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading
from fractions import Fraction
from typing import Any

import numpy as np

#: ``AVFrameSideDataType`` value of ``AV_FRAME_DATA_REGIONS_OF_INTEREST`` (stable in FFmpeg's ABI)
_ROI_SIDE_DATA = 18
_REGION_INTS = 7  # self_size, top, bottom, left, right, qoffset.num, qoffset.den
_REGION_BYTES = 4 * _REGION_INTS
#: PyAV major versions whose ``Frame`` layout the direct route was verified on
VERIFIED_PYAV = ("18",)

_lock = threading.Lock()
_direct: _DirectWriter | bool | None = None  # None: not checked yet; False: unavailable


def block_regions(offsets: np.ndarray, block: int, qp_range: int) -> np.ndarray:
    """The ``AVRegionOfInterest`` array (``K×7`` int32) covering the non-zero blocks of one frame's offset map,
    one region per horizontal run of equal values."""
    offsets = np.asarray(offsets)
    rows, cols = offsets.shape
    if offsets.size == 0:
        return np.zeros((0, _REGION_INTS), np.int32)
    starts = np.ones(offsets.shape, dtype=bool)
    starts[:, 1:] = offsets[:, 1:] != offsets[:, :-1]
    r, c = np.nonzero(starts)  # row-major: runs in order
    flat_starts = r * cols + c
    ends = np.append(flat_starts[1:], rows * cols)
    ends = np.where(np.append(r[1:], rows) != r, r * cols + cols, ends)  # a run ends at its row's end
    values = offsets[r, c]
    keep = values != 0
    r, c, values, length = r[keep], c[keep], values[keep], (ends - flat_starts)[keep]
    out = np.empty((len(r), _REGION_INTS), np.int32)
    out[:, 0] = _REGION_BYTES
    out[:, 1] = r * block
    out[:, 2] = (r + 1) * block
    out[:, 3] = c * block
    out[:, 4] = (c + length) * block
    out[:, 5] = values
    out[:, 6] = qp_range
    return out


_recent: dict[tuple[Any, ...], np.ndarray] = {}


def cached_block_regions(offsets: np.ndarray, block: int, qp_range: int) -> np.ndarray:
    """:func:`block_regions`, remembered for the last few maps: a fixed or per-GOP map is converted once, not once per
    frame (the key is the map's bytes, so a changed map is never served stale)."""
    arr = np.ascontiguousarray(offsets, dtype=np.int32)
    key = (arr.shape, block, qp_range, arr.tobytes())
    found = _recent.get(key)
    if found is None:
        found = block_regions(arr, block, qp_range)
        found.setflags(write=False)
        with _lock:
            while len(_recent) >= 8:
                _recent.pop(next(iter(_recent)))
            _recent[key] = found
    return found


def attach_regions(frame: Any, regions: np.ndarray) -> Any:
    """Return ``frame`` carrying ``regions`` (from :func:`block_regions`) as ROI side data."""
    if len(regions) == 0:
        return frame
    writer = _direct_writer()
    if writer is not None:
        writer.attach(frame, regions)
        return frame
    return _attach_with_filters(frame, regions)


def delivery_route() -> str:
    """``"direct"`` or ``"addroi"``: how :func:`attach_regions` delivers regions in this process."""
    return "direct" if _direct_writer() is not None else "addroi"


def _attach_with_filters(frame: Any, regions: np.ndarray) -> Any:
    import av

    graph = av.filter.Graph()
    node = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name, time_base=Fraction(1, 25))
    source = node
    for _, top, bottom, left, right, num, den in regions.tolist():
        roi = graph.add(
            "addroi", x=str(left), y=str(top), w=str(right - left), h=str(bottom - top), qoffset=f"{num}/{den}"
        )
        node.link_to(roi)
        node = roi
    sink = graph.add("buffersink")
    node.link_to(sink)
    graph.configure()
    source.push(frame)
    return sink.pull()


def _roi_bytes(frame: Any) -> bytes | None:
    for side in frame.side_data:
        if side.type.value == _ROI_SIDE_DATA:
            return bytes(side)
    return None


class _DirectWriter:
    """``av_frame_new_side_data`` on the ``AVFrame`` behind a PyAV frame (see the module docstring)."""

    def __init__(self, libavutil: ctypes.CDLL, offset: int) -> None:
        self._new_side_data = libavutil.av_frame_new_side_data
        self._new_side_data.restype = ctypes.c_void_p
        self._new_side_data.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
        self._offset = offset

    def frame_pointer(self, frame: Any) -> int:
        pointer = ctypes.c_void_p.from_address(id(frame) + self._offset).value
        if not pointer:
            raise RuntimeError("frame has no AVFrame")
        return int(pointer)

    def attach(self, frame: Any, regions: np.ndarray) -> None:
        data = np.ascontiguousarray(regions, dtype=np.int32)
        side = self._new_side_data(self.frame_pointer(frame), _ROI_SIDE_DATA, data.nbytes)
        if not side:
            raise MemoryError("av_frame_new_side_data failed")
        target = ctypes.c_void_p.from_address(side + 8).value  # AVFrameSideData.data (after the int type + padding)
        if not target:
            raise MemoryError("av_frame_new_side_data returned no buffer")
        ctypes.memmove(target, data.ctypes.data, data.nbytes)


def _direct_writer() -> _DirectWriter | None:
    global _direct
    if _direct is None:
        with _lock:
            if _direct is None:
                try:
                    _direct = _probe_direct_writer() or False
                except Exception:  # any surprise: keep the slow but safe route
                    _direct = False
    return _direct if isinstance(_direct, _DirectWriter) else None


def _probe_direct_writer() -> _DirectWriter | None:
    """The direct writer if it reproduces the ``addroi`` route's bytes exactly on probe frames, else ``None``."""
    import av

    if os.environ.get("FCM_ROI_ROUTE") == "addroi" or av.__version__.split(".")[0] not in VERIFIED_PYAV:
        return None
    libs = glob.glob(os.path.join(os.path.dirname(av.__file__), os.pardir, "av.libs", "libavutil*.so*"))
    if len(libs) != 1:  # not the manylinux wheel layout we know
        return None
    # Cython extension object: PyObject header, the vtable pointer (Frame has cdef methods), then ``AVFrame *ptr``.
    offset = object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p)
    if av.VideoFrame.__basicsize__ < offset + ctypes.sizeof(ctypes.c_void_p):  # the pointer must lie in the object
        return None
    writer = _DirectWriter(ctypes.CDLL(libs[0]), offset)
    for width, height, pix_fmt in ((144, 112, "gray10le"), (80, 48, "gray")):
        probe = av.VideoFrame(width, height, pix_fmt)
        # the pointer must lead to an AVFrame of this frame's size and format before anything is written through it
        fields = (ctypes.c_int * 4).from_address(writer.frame_pointer(probe) + 104)  # width, height, nb_samples, format
        if (fields[0], fields[1]) != (width, height):
            return None
        regions = block_regions(np.array([[3, 3, 0], [0, -2, -2], [1, 0, 5]])[: height // 16, : width // 16], 16, 63)
        expected = _roi_bytes(_attach_with_filters(probe, regions))
        writer.attach(probe, regions)
        if expected is None or _roi_bytes(probe) != expected:
            return None
    return writer
