"""Same bytes on any core count: every entry point runs torch with a fixed thread count (fcm.numerics)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from fcm.numerics import DEFAULT_TORCH_THREADS, check_threads, numerics_record, torch_threads

# one process per thread count, as on machines of 1, 2 and 4 cores: torch's default there is the core count
# (OMP_NUM_THREADS, capped by the cores torch sees, so the script sets it as such a machine would have it)
_ENCODE_BOTH = textwrap.dedent(
    """
    import sys
    import torch
    from fcm.cli import main
    out, threads, *extra = sys.argv[1:]
    torch.set_num_threads(int(threads))
    assert torch.get_num_threads() == int(threads)
    image = ["encode", "skimage:chelsea", "--qp", "32", "--preset", "ultrafast", "-o", out + ".fcm"]
    video = ["encode-video", "clip:astronaut:5:160x120", "--qp", "32", "--preset", "ultrafast", "--intra-period", "4",
             "--no-progress", "-o", out + ".fcmv"]
    assert main(image + extra) == 0 and main(video + extra) == 0
    print("threads after", torch.get_num_threads())
    """
)


def test_cli_bitstreams_are_the_same_under_1_2_and_4_threads(tmp_path):
    streams = {}
    for threads in (1, 2, 4):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        out = tmp_path / f"t{threads}"
        proc = subprocess.run(
            [sys.executable, "-c", _ENCODE_BOTH, str(out), str(threads)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"threads after {threads}" in proc.stdout  # the command pinned its own count, then gave it back
        streams[threads] = ((out.with_suffix(".fcm")).read_bytes(), (out.with_suffix(".fcmv")).read_bytes())
    assert streams[1][0] == streams[2][0] == streams[4][0], "image bitstreams differ between thread counts"
    assert streams[1][1] == streams[2][1] == streams[4][1], ".fcmv streams differ between thread counts"


def test_library_encode_pins_its_threads_and_gives_them_back(chelsea, lite0):
    from fcm import pipeline
    from fcm.codecs import CodecParams

    params = CodecParams(32, preset="ultrafast")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = pipeline.encode(chelsea, lite0, "x265", params).bitstream
        torch.set_num_threads(3)  # a caller that raised torch's threads
        again = pipeline.encode(chelsea, lite0, "x265", params).bitstream
        assert torch.get_num_threads() == 3  # the caller's setting is given back
    finally:
        torch.set_num_threads(before)
    assert again == one


def test_torch_threads_context_restores_and_checks():
    before = torch.get_num_threads()
    with torch_threads(DEFAULT_TORCH_THREADS):
        assert torch.get_num_threads() == DEFAULT_TORCH_THREADS
    assert torch.get_num_threads() == before
    with torch_threads(None):  # None leaves the caller's setting alone
        assert torch.get_num_threads() == before
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="torch_threads must be a positive integer"), torch_threads(bad):
            pass
    assert check_threads(4) == 4


def test_numerics_record_names_threads_kernels_and_overrides(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    rec = numerics_record(1)
    assert rec["torch_threads"] == 1 and rec["torch_version"] == str(torch.__version__)
    assert type(rec["torch_version"]) is str
    assert rec["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert rec["environment"]["ATEN_CPU_CAPABILITY"] == "avx2" and "ONEDNN_MAX_CPU_ISA" in rec["environment"]
    assert isinstance(rec["cpu"], str) and rec["cpu"]


def test_the_cpu_identity_names_the_generation_not_only_the_brand():
    from fcm.numerics import cpu_identity

    two_cores = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n"
        "stepping\t: 1\n\nprocessor\t: 1\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: Other\n"
    )
    assert cpu_identity(two_cores) == "AMD EPYC (family 26, model 2, stepping 1)"  # the first processor's block
    assert cpu_identity("model name\t: Some ARM core\n") == "Some ARM core"
