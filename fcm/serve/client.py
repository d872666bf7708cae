"""The edge side: run the front half, encode, post the bitstream to an ``fcm serve`` server, read the answer.

One :class:`EdgeClient` keeps one HTTP connection open (keep-alive) for any number of images, and reports where the
time went: the edge (front, pack, encode), the network (the request's round trip minus the server's own time) and the
cloud (the server's time, split into its stages).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fcm.errors import FcmError
from fcm.numerics import DEFAULT_TORCH_THREADS

if TYPE_CHECKING:
    import numpy as np

    from fcm.codecs import CodecParams
    from fcm.models.base import SplitModel


class ServerError(FcmError):
    """The server refused a request; ``status`` is its HTTP status, the message its explanation."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"server answered {status}: {message}" if status else f"no answer from the server: {message}")
        self.status = status


@dataclass(frozen=True)
class SendResult:
    """The server's answer for one image and where the time went (seconds)."""

    answer: dict[str, Any]
    bits: int
    edge_s: float
    network_s: float
    cloud_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.answer.get("result"),
            "model": self.answer.get("model"),
            "split": self.answer.get("split"),
            "bits": self.bits,
            "seconds": {"edge": self.edge_s, "network": self.network_s, "cloud": self.cloud_s},
            "cloud_stages": self.answer.get("seconds"),
        }


class EdgeClient:
    """Send bitstreams (or images, coded here) to a server at ``url``; a context manager closing its connection."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 60.0) -> None:
        import httpx

        headers = {"content-type": "application/octet-stream"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)

    def __enter__(self) -> EdgeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def models(self) -> list[dict[str, Any]]:
        return self._checked(self._request("GET", "/v1/models"))["models"]

    def decode(self, data: bytes, top_k: int = 5) -> dict[str, Any]:
        """Post one bitstream; the server's JSON answer (``ServerError`` for a refusal or an unreachable server)."""
        return self._checked(self._request("POST", "/v1/decode", params={"top_k": top_k}, content=data))

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise ServerError(0, f"{type(e).__name__}: {e} ({self._http.base_url}{path})") from e

    def send(
        self,
        image: np.ndarray,
        model: SplitModel,
        codec: str,
        params: CodecParams,
        bit_depth: int | None = None,
        top_k: int = 5,
        wrapper: Any = None,
        torch_threads: int | None = DEFAULT_TORCH_THREADS,
    ) -> SendResult:
        """Run the edge half on ``image`` (with ``torch_threads``, see :mod:`fcm.numerics`), encode, post, and time
        each side."""
        from fcm import pipeline

        enc = pipeline.encode(image, model, codec, params, bit_depth, wrapper=wrapper, torch_threads=torch_threads)
        edge = enc.front_s + enc.wrap_s + enc.pack_s + enc.rdo_s + enc.codec_s
        t0 = time.perf_counter()
        answer = self.decode(enc.bitstream, top_k)
        round_trip = time.perf_counter() - t0
        cloud = float(answer.get("server_seconds", 0.0))
        return SendResult(answer, enc.num_bits, edge, max(0.0, round_trip - cloud), cloud)

    @staticmethod
    def _checked(response: Any) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            message = body.get("error", response.text) if isinstance(body, dict) else response.text
            raise ServerError(response.status_code, str(message)[:500])
        if not isinstance(body, dict):
            raise ServerError(response.status_code, f"the answer is not a JSON object: {response.text[:200]!r}")
        return body
