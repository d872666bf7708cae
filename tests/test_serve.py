"""The cloud server on a real socket (uvicorn in a thread, loopback) and the edge client against it."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install fcm[serve])")

from fcm import pipeline
from fcm.codecs import CodecParams
from fcm.serve.app import ModelCache, ServeConfig, ServedModel, create_app
from fcm.serve.client import EdgeClient, ServerError

TOKEN = "s3cret-token-for-tests-0123456789"


class _Server:
    """uvicorn serving ``app`` on a free loopback port until :meth:`stop`."""

    def __init__(self, app) -> None:
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def cache(lite0):
    models = ModelCache((ServedModel("efficientnet_lite0", "stage4"),))
    models.entries[(lite0.name, lite0.split, lite0.weights_tag, None, None)] = type(
        "E", (), {"model": lite0, "wrapper": None}
    )()
    return models


@pytest.fixture(scope="module")
def server(cache):
    srv = _Server(create_app(ServeConfig(cache.served, max_body_bytes=1 << 20), cache))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def secured(cache):
    srv = _Server(create_app(ServeConfig(cache.served, token=TOKEN), cache))
    yield srv
    srv.stop()


def test_decode_matches_the_in_process_decoder(server, lite0, chelsea):
    enc = pipeline.encode(chelsea, lite0, "x265", CodecParams(32))
    local = pipeline.decode(enc.bitstream, lite0)
    expected = lite0.describe(local.output, 5)[0]
    with EdgeClient(server.url) as client:
        answer = client.decode(enc.bitstream)
        assert answer["result"] == json.loads(json.dumps(expected))
        assert (answer["model"], answer["split"], answer["task"]) == ("efficientnet_lite0", "stage4", "classification")
        sent = client.send(chelsea, lite0, "x265", CodecParams(32))
        assert sent.answer["result"] == answer["result"] and sent.bits == enc.num_bits
        assert sent.edge_s > 0 and sent.cloud_s > 0 and sent.network_s >= 0
        assert client.models() == [
            {
                "model": "efficientnet_lite0",
                "split": "stage4",
                "weights": lite0.weights_tag,
                "task": "classification",
                "wrapper": None,
            }
        ]


def test_hostile_bitstreams_get_4xx_never_5xx(server, lite0, chelsea):
    from tests.test_bitstream import fuzz_tool

    enc = pipeline.encode(chelsea, lite0, "x265", CodecParams(37))
    data = enc.bitstream
    start = fuzz_tool._payload_start(data)
    rng = np.random.default_rng(0)
    statuses = []
    with EdgeClient(server.url) as client:
        for i in range(200):
            kind = fuzz_tool.MUTATIONS[i % len(fuzz_tool.MUTATIONS)]
            mutated = fuzz_tool.mutate(data, kind, rng, start)
            try:
                client.decode(mutated)
                statuses.append(200)
            except ServerError as e:
                statuses.append(e.status)
                assert e.status in (400, 404, 413), (kind, str(e))
        # the server still answers correctly after all of it
        assert client.decode(data)["result"]["top"][0]["label"]
    assert all(s < 500 for s in statuses) and statuses.count(200) < len(statuses)
    import httpx

    metrics = httpx.get(server.url + "/metrics").text
    assert "fcm_decode_errors_total" in metrics and 'reason="bitstream"' in metrics


def test_unknown_model_and_limits(server, lite0, chelsea):
    from fcm.models import get_model

    other = get_model("efficientnet_lite0", "stage3")
    enc = pipeline.encode(chelsea, other, "x265", CodecParams(32))
    with EdgeClient(server.url) as client:
        with pytest.raises(ServerError, match=r"404.*does not serve efficientnet_lite0/stage3"):
            client.decode(enc.bitstream)
        with pytest.raises(ServerError, match=r"400.*BitstreamError"):
            client.decode(b"not a bitstream at all")
        with pytest.raises(ServerError, match=r"422.*top_k"):
            client.decode(enc.bitstream, top_k=0)
    import httpx

    # refused from the declared length, before the body is read
    with httpx.Client(base_url=server.url) as http:
        big = http.post("/v1/decode", content=b"\0" * ((1 << 20) + 1))
        assert big.status_code == 413 and "exceeds the limit" in big.json()["error"]

        def chunks():
            for _ in range(40):
                yield b"\0" * 65536  # 2.5 MiB, no Content-Length

        streamed = http.post("/v1/decode", content=chunks())
        assert streamed.status_code == 413
        assert http.get("/healthz").json() == {"status": "ok"} and http.get("/readyz").status_code == 200


def test_bearer_token(secured, lite0, chelsea):
    import httpx

    enc = pipeline.encode(chelsea, lite0, "x265", CodecParams(32))
    with httpx.Client(base_url=secured.url) as http:
        assert http.post("/v1/decode", content=enc.bitstream).status_code == 401
        wrong = http.post("/v1/decode", content=enc.bitstream, headers={"authorization": "Bearer wrong-token"})
        assert wrong.status_code == 401
        assert http.get("/v1/models").status_code == 401
        assert http.get("/healthz").status_code == 200  # liveness stays open for the orchestrator
    with EdgeClient(secured.url, token=TOKEN) as client:
        assert client.decode(enc.bitstream)["result"]["top"]


def test_client_disconnect_mid_upload_leaves_the_server_serving(server, lite0, chelsea):
    enc = pipeline.encode(chelsea, lite0, "x265", CodecParams(32))
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(
            b"POST /v1/decode HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            + f"Content-Length: {len(enc.bitstream)}\r\n\r\n".encode()
            + enc.bitstream[:100]
        )
    with EdgeClient(server.url) as client:
        assert client.decode(enc.bitstream)["result"]["top"]
    import httpx

    deadline = time.time() + 10
    while 'fcm_decode_errors_total{reason="disconnect"}' not in httpx.get(server.url + "/metrics").text:
        assert time.time() < deadline, "the abandoned upload was never counted"
        time.sleep(0.1)


def test_streams_asking_for_too_much_work_or_giving_non_finite_outputs(server, lite0, chelsea):
    import torch

    from fcm.errors import BitstreamError
    from fcm.pipeline import EdgeFeatures, run_front
    from fcm.serve.app import _check_finite

    edge = run_front(chelsea, lite0)
    two = EdgeFeatures(
        type(edge.features)({k: v.repeat(2, 1, 1, 1) for k, v in edge.features.tensors.items()}, edge.features.meta),
        edge.input_size,
        edge.front_s,
    )
    enc = pipeline.encode_features(two, lite0, "x265", CodecParams(32))
    assert enc.header.num_frames == 2
    with EdgeClient(server.url) as client, pytest.raises(ServerError, match=r"400.*at most 1 frame"):
        client.decode(enc.bitstream)
    with pytest.raises(BitstreamError, match="non-finite"):
        _check_finite(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(BitstreamError, match="non-finite"):
        _check_finite([{"boxes": torch.tensor([[0.0, 0.0, float("inf"), 1.0]]), "labels": torch.tensor([1])}])
    _check_finite(torch.zeros(1, 3))


def test_token_and_model_specs(tmp_path, monkeypatch):
    from fcm.errors import ConfigError
    from fcm.serve.auth import authorized, load_token

    monkeypatch.delenv("FCM_SERVE_TOKEN", raising=False)
    assert load_token() is None and authorized(None, None)
    (tmp_path / "t").write_text(TOKEN + "\n")
    assert load_token(tmp_path / "t") == TOKEN
    assert authorized(f"Bearer {TOKEN}", TOKEN) and not authorized(TOKEN, TOKEN) and not authorized(None, TOKEN)
    (tmp_path / "short").write_text("abc")
    with pytest.raises(ConfigError, match="at least 16"):
        load_token(tmp_path / "short")
    assert ServedModel.parse("efficientnet_lite0:stage4@ck.pt") == ServedModel(
        "efficientnet_lite0", "stage4", wrapper="ck.pt"
    )
    with pytest.raises(ConfigError):
        ServeConfig(())


def test_detector_bitstreams_decode_like_the_in_process_decoder(lite0):
    """A Faster R-CNN (FPN split) stream: the server's detections are the in-process decoder's."""
    import torch

    from fcm.models import get_model

    torch.manual_seed(3)
    detector = get_model("faster_rcnn_r50_fpn", "fpn", min_size=128, max_size=160, box_score_thresh=0.0)
    served = ModelCache((ServedModel("faster_rcnn_r50_fpn", "fpn"),))
    entry = type("E", (), {"model": detector, "wrapper": None})()
    served.entries[(detector.name, detector.split, detector.weights_tag, None, None)] = entry
    srv = _Server(create_app(ServeConfig(served.served), served))
    try:
        image = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
        enc = pipeline.encode(image, detector, "x265", CodecParams(27))
        with torch.no_grad():
            expected = detector.describe(pipeline.decode(enc.bitstream, detector).output, 5)[0]
        with EdgeClient(srv.url) as client:
            answer = client.decode(enc.bitstream)
        assert answer["task"] == "detection" and answer["result"] == json.loads(json.dumps(expected))
        assert len(answer["result"]["detections"]) == 5
        # the classifier stream is not this server's: a 404 naming what it serves
        other = pipeline.encode(image, lite0, "x265", CodecParams(27))
        with EdgeClient(srv.url) as client, pytest.raises(ServerError, match="serves faster_rcnn_r50_fpn/fpn"):
            client.decode(other.bitstream)
    finally:
        srv.stop()


def test_serve_command_line_errors(capsys):
    from fcm.cli import main

    assert main(["serve", "--model", "efficientnet_lite0", "--model", "resnet18", "--weights", "w.pth"]) == 2
    assert "apply to one served model" in capsys.readouterr().err
    assert main(["serve", "--model-option", "min_size"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["serve", "--ssl-certfile", "c.pem"]) == 2
    assert "needs both" in capsys.readouterr().err
