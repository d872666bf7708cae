"""A real fcm codec as the non-differentiable map φ of the surrogates, and the module that trains through it.

:class:`RealCodec` runs encode+decode of a registered codec (``get_codec(name)``) on **detached** packed frames:
float samples in ``[0, 2^bits − 1]`` are rounded (half to even) and clipped to ``uint16``, each batch item is coded
as one intra picture, and the decoded samples come back as floats of the input's dtype and device, with the codec's
byte count per item (extradata + packets: the rate, without fcm container overhead). Items run in worker processes
(``spawn``; created on first use and reused until :meth:`RealCodec.close`), so one training step is not serialised
on codec calls; ``workers=0`` runs them inline. Codecs are deterministic, so results do not depend on ``workers``.

:class:`CodecSurrogate` is the training-loop module: ``ŷ = φ(y)`` in value with the SCALED (default) or
straight-through gradient, plus the bytes per item.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from fcm.codecs import CodecParams, get_codec
from fcm.errors import CodecError, ConfigError, ShapeError, worker_death_message
from fcm.surrogates.scaled import DEFAULT_DELTA, DEFAULT_DIMS, scaled_estimate
from fcm.surrogates.straight_through import straight_through

QpArg = int | Sequence[int] | torch.Tensor | None


@dataclass(frozen=True)
class CodedBatch:
    """What :meth:`RealCodec.run` returns.

    Attributes:
        frames: the decoded samples, float, shape/dtype/device of the input (no gradient).
        num_bytes: codec bytes per batch item, ``int64`` of shape ``(N,)``, on the input's device.
    """

    frames: torch.Tensor
    num_bytes: torch.Tensor


class RealCodec:
    """φ(y) = decode(encode(round-clip(y))) with a registered fcm codec, per batch item.

    Args:
        codec: registry name (``"x265"``, ``"x264"``, ``"svtav1"``, ``"vp9"``, ``"ffv1"``, …).
        qp: the default QP (a call may override it).
        bit_depth: sample bit depth of the frames (default: the codec's highest).
        params: further :class:`fcm.codecs.CodecParams` (rate control, preset, options); its ``qp`` is replaced
            by the call's. ``gop`` is irrelevant: each item is one picture.
        workers: worker processes (0: code inline in this process).

    Calling the object (``φ(y)``) returns the decoded frames at the default QP, so it plugs into
    :class:`fcm.surrogates.Scaled` or :class:`fcm.surrogates.StraightThrough`; :meth:`run` also returns the bytes.
    Use it as a context manager, or call :meth:`close`, to stop the workers.
    """

    def __init__(
        self,
        codec: str,
        qp: int,
        bit_depth: int | None = None,
        params: CodecParams | None = None,
        workers: int = 0,
    ) -> None:
        instance = get_codec(codec)  # unknown names fail here, with the known ones listed
        self.codec_name = codec
        self.bit_depth = instance.default_bit_depth if bit_depth is None else int(bit_depth)
        if params is not None and not isinstance(params, CodecParams):
            raise ConfigError(f"params must be a CodecParams, got {type(params).__name__}")
        base = CodecParams(qp=int(qp)) if params is None else replace(params, qp=int(qp))
        instance.check_params(self.bit_depth, base)  # CodecError naming the problem, before any worker starts
        self._codec = instance
        self.params = base
        if workers < 0:
            raise ConfigError(f"workers must be ≥ 0, got {workers}")
        self.workers = int(workers)
        self._pool: Executor | None = None

    @property
    def peak(self) -> int:
        """Largest sample value, ``2^bit_depth − 1``."""
        return (1 << self.bit_depth) - 1

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return self.run(frames).frames

    def run(self, frames: torch.Tensor, qp: QpArg = None) -> CodedBatch:
        """Code every item of ``frames`` (``N×H×W`` or ``N×1×H×W`` float samples in ``[0, 2^bits − 1]``).

        ``qp``: ``None`` (the default QP), one int for the batch, or one per item (a sequence or an integer
        tensor, e.g. sampled per step).
        Raises :class:`fcm.errors.ShapeError` for a wrong shape or non-finite samples and
        :class:`fcm.errors.CodecError` for a QP the codec does not take.
        """
        pictures = self._to_pictures(frames)
        params = [replace(self.params, qp=q) for q in self._qps(qp, len(pictures))]
        for p in {p.qp: p for p in params}.values():
            self._codec.check_params(self.bit_depth, p)
        results = self._code(pictures, params)
        decoded = np.stack([picture for picture, _ in results]).astype(np.float32)
        out = torch.from_numpy(decoded).to(device=frames.device, dtype=frames.dtype).reshape(frames.shape)
        num_bytes = torch.tensor([n for _, n in results], dtype=torch.int64, device=frames.device)
        return CodedBatch(out, num_bytes)

    def _to_pictures(self, frames: torch.Tensor) -> list[np.ndarray]:
        if not isinstance(frames, torch.Tensor) or not frames.is_floating_point():
            raise ShapeError(f"codec input must be a float tensor, got {getattr(frames, 'dtype', type(frames))}")
        if frames.dim() == 4 and frames.shape[1] == 1:
            frames = frames[:, 0]
        if frames.dim() != 3:
            raise ShapeError(f"codec input must be N×H×W or N×1×H×W frames, got shape {tuple(frames.shape)}")
        if frames.numel() == 0:
            raise ShapeError(f"codec input is empty: shape {tuple(frames.shape)}")
        samples = frames.detach().to("cpu", torch.float64).numpy()
        if not np.isfinite(samples).all():
            raise ShapeError("codec input contains NaN or infinite samples")
        quantized = np.clip(np.rint(samples), 0, self.peak).astype(np.uint16)
        return list(quantized)

    def _qps(self, qp: QpArg, count: int) -> list[int]:
        if qp is None:
            return [self.params.qp] * count
        if isinstance(qp, torch.Tensor):  # e.g. torch.randint(...) sampled by a training loop
            qp = qp.tolist()
        if isinstance(qp, (int, np.integer)):
            return [int(qp)] * count
        qps = [int(q) for q in qp]
        if len(qps) != count:
            raise ConfigError(f"got {len(qps)} QPs for {count} batch items")
        return qps

    def _code(self, pictures: list[np.ndarray], params: list[CodecParams]) -> list[tuple[np.ndarray, int]]:
        from fcm.surrogates._codec_worker import code_picture

        if self.workers == 0:
            return [
                code_picture(self.codec_name, pic, self.bit_depth, p) for pic, p in zip(pictures, params, strict=True)
            ]
        pool = self._executor()
        futures = [
            pool.submit(code_picture, self.codec_name, pic, self.bit_depth, p)
            for pic, p in zip(pictures, params, strict=True)
        ]
        try:
            return [f.result() for f in futures]  # in submission order: independent of scheduling
        except BrokenProcessPool as exc:
            self.close()  # the next call starts fresh workers
            raise CodecError(worker_death_message("codec")) from exc

    def _executor(self) -> Executor:
        if self._pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # spawn: forking a process whose torch has started threads can deadlock
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))
        return self._pool

    def close(self) -> None:
        """Stop the worker processes (a later call starts new ones)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> RealCodec:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:  # a pool cannot be pickled; a copy starts its own
        state = self.__dict__.copy()
        state["_pool"] = None
        return state


GradientMode = Literal["scaled", "ste"]


class CodecSurrogate(nn.Module):
    """Train through a real codec: ``forward(y, qp=None) -> (ŷ, num_bytes)``.

    ``ŷ = φ(y)`` bit-exactly in value (φ: :class:`RealCodec`), with the gradient of ``gradient``:
    ``"scaled"`` (``g − v·(εᵀg)/(‖v‖² + Nδ)`` per reduction set, :mod:`fcm.surrogates.scaled`) or ``"ste"``
    (identity). ``num_bytes``: ``int64`` ``(N,)``, the codec's bytes per item (no gradient). The rate term is not
    differentiable through a real codec; add a proxy (e.g. :class:`fcm.surrogates.ProxyCodec`'s) if needed.
    """

    def __init__(
        self,
        codec: RealCodec,
        gradient: GradientMode = "scaled",
        dims: Sequence[int] = DEFAULT_DIMS,
        delta: float = DEFAULT_DELTA,
    ) -> None:
        super().__init__()
        if gradient not in ("scaled", "ste"):
            raise ConfigError(f"gradient must be 'scaled' or 'ste', not {gradient!r}")
        if not delta >= 0:
            raise ConfigError(f"SCALED's σ guard δ must be ≥ 0, got {delta}")
        self.codec = codec
        self.gradient: GradientMode = gradient
        self.dims = tuple(dims)
        self.delta = float(delta)

    def forward(self, y: torch.Tensor, qp: QpArg = None) -> tuple[torch.Tensor, torch.Tensor]:
        coded = self.codec.run(y.detach(), qp)
        if self.gradient == "scaled":
            return scaled_estimate(y, coded.frames, self.dims, self.delta), coded.num_bytes
        return straight_through(y, coded.frames), coded.num_bytes
