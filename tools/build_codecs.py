#!/usr/bin/env python
"""Build the MPEG reference encoders from source folders you already have, and write a ready ``--codecs`` file.

    python tools/build_codecs.py [--vvenc SRC] [--vtm SRC] [--hm SRC] [--prefix DIR] [--jobs N]

Each SRC is a checkout or an unpacked release of (fcm downloads nothing; get them yourself):

* VVenC — https://github.com/fraunhoferhhi/vvenc (tested: v1.9.1)
* VTM   — https://vcgit.hhi.fraunhofer.de/jvet/VVCSoftware_VTM (GitHub mirrors carry the release tags; tested:
  VTM-23.13)
* HM    — https://vcgit.hhi.fraunhofer.de/jvet/HM (tested: master of June 2021, version string 16.23)

Needs cmake, make and a C++ compiler (Debian: ``apt install cmake g++``). Each one is configured with CMake in
``PREFIX/build/<codec>`` (Release), built, and its binaries and configuration files copied to ``PREFIX/bin`` and
``PREFIX/cfg/<codec>``. Then ``PREFIX/codecs.yaml`` declares what was built (``vtm``, ``vvenc``, ``hm``) for
``fcm --codecs PREFIX/codecs.yaml …`` or ``FCM_CODECS``; ``tests/test_external_codecs.py`` runs them when
``FCM_CODECS`` names that file. Decoding is in process with PyAV's VVC and HEVC decoders (bit-exact with the
reference decoders for conforming streams); the reference decoders are built too and named in the file's comments.
Prints JSON: what was built, versions, build seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

#: HM builds with -Werror, and newer compilers warn where its authors' did not (GCC 12: array-bounds in
#: TComLoopFilter.cpp): these warnings stay visible but do not stop the build. Only the options the compiler knows
#: are passed (an unknown -Wno-error=X is itself an error), after the user's own CXXFLAGS.
HM_TOLERATED = ("array-bounds", "maybe-uninitialized", "stringop-overflow", "use-after-free", "class-memaccess")


def supported_flags(candidates: list[str]) -> list[str]:
    """The compiler options among ``candidates`` that ``$CXX`` (default ``c++``) accepts."""
    compiler = os.environ.get("CXX", "c++")
    ok = []
    for flag in candidates:
        probe = subprocess.run(
            [compiler, "-Werror", flag, "-x", "c++", "-fsyntax-only", "-"],
            input=b"int main() { return 0; }\n",
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            ok.append(flag)
    return ok


def extra_cmake(codec: str) -> list[str]:
    if codec != "hm":
        return []
    flags = [os.environ.get("CXXFLAGS", "").strip(), *supported_flags([f"-Wno-error={w}" for w in HM_TOLERATED])]
    return [f"-DCMAKE_CXX_FLAGS={' '.join(f for f in flags if f)}"]


#: codec → (CMake targets, binaries to install (first: encoder), configuration files)
#: codec → FFmpeg decoder that decodes its streams in process
PYAV_DECODERS = {"vtm": "vvc", "vvenc": "vvc", "hm": "hevc"}

SPECS = {
    "vvenc": (["vvencapp"], ["vvencapp"], []),
    "vtm": (
        ["EncoderApp", "DecoderApp"],
        ["EncoderApp", "DecoderApp"],
        ["encoder_intra_vtm.cfg", "encoder_lowdelay_P_vtm.cfg"],
    ),
    "hm": (
        ["TAppEncoder", "TAppDecoder"],
        ["TAppEncoder", "TAppDecoder"],
        ["encoder_intra_main_rext.cfg", "encoder_lowdelay_P_main.cfg"],
    ),
}


def run(cmd: list[str], log: Path) -> None:
    with log.open("a") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"build step failed ({' '.join(cmd[:3])} …), see {log}:\n{tail}")


def find_binary(src: Path, build: Path, name: str) -> Path:
    """The built executable ``name`` (reference builds put them under the source's ``bin/``, with a ``Static``
    suffix for VTM/HM)."""
    candidates = [
        p
        for root in (build, src / "bin")
        if root.exists()
        for p in root.rglob(f"{name}*")
        if p.is_file() and os.access(p, os.X_OK) and p.suffix in ("", ".exe")
    ]
    exact = [p for p in candidates if p.name in (name, f"{name}Static")]
    if not exact:
        raise SystemExit(
            f"built {name}, but found no executable named {name} or {name}Static under {build} or {src}/bin"
        )
    return max(exact, key=lambda p: p.stat().st_mtime)


def version_of(codec: str, src: Path) -> str:
    try:
        if codec == "vvenc":
            text = (src / "CMakeLists.txt").read_text(errors="replace")
            marker = "project( vvenc VERSION "
            return "vvenc " + text.split(marker, 1)[1].split(")", 1)[0].strip() if marker in text else "vvenc ?"
        header = {
            "vtm": src / "source" / "Lib" / "CommonLib" / "version.h",
            "hm": src / "source" / "Lib" / "TLibCommon" / "CommonDef.h",
        }[codec]
        candidates = [header, src / "source" / "Lib" / "CommonLib" / "CommonDef.h"]
        for path in candidates:
            if path.exists():
                for line in path.read_text(errors="replace").splitlines():
                    if ("VTM_VERSION" in line or "NV_VERSION" in line) and '"' in line:
                        return f"{codec} " + line.split('"')[1]
    except (OSError, IndexError):
        pass
    return f"{codec} ?"


def build(codec: str, src: Path, prefix: Path, jobs: int) -> dict:
    targets, binaries, cfgs = SPECS[codec]
    if not (src / "CMakeLists.txt").is_file():
        raise SystemExit(f"{src} has no CMakeLists.txt: give the top folder of a {codec} checkout or release")
    build_dir = prefix / "build" / codec
    build_dir.mkdir(parents=True, exist_ok=True)
    log = prefix / "build" / f"{codec}.log"
    log.write_text("")
    t0 = time.perf_counter()
    run(["cmake", "-S", str(src), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release", *extra_cmake(codec)], log)
    run(["cmake", "--build", str(build_dir), "--config", "Release", "-j", str(jobs), "--target", *targets], log)
    bin_dir = prefix / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    installed = {}
    for name in binaries:
        built = find_binary(src, build_dir, name)
        target = bin_dir / name
        shutil.copy2(built, target)
        installed[name] = str(target)
    cfg_dir = prefix / "cfg" / codec
    cfg_dir.mkdir(parents=True, exist_ok=True)
    for cfg in cfgs:
        shutil.copy2(src / "cfg" / cfg, cfg_dir / cfg)
    return {
        "version": version_of(codec, src),
        "binaries": installed,
        "cfg": str(cfg_dir),
        "build_seconds": round(time.perf_counter() - t0, 1),
        "log": str(log),
    }


def codecs_yaml(built: dict[str, dict]) -> str:
    """The ``--codecs`` file declaring what was built (decoded in process by PyAV)."""
    lines = [
        "# Written by tools/build_codecs.py: reference encoders built from source. Use with",
        "#   fcm --codecs THIS_FILE …  (or FCM_CODECS=THIS_FILE)",
        "",
    ]
    for codec in ("vtm", "vvenc", "hm"):  # the order the file has always had
        if codec not in built:
            continue
        b = built[codec]
        _, binaries, cfgs = SPECS[codec]
        decoder = f"; reference decoder: {b['binaries'][binaries[1]]}" if len(binaries) > 1 else ""
        lines += [
            f"{codec}:  # {b['version']}{decoder}",
            f"  template: {codec}",
            f"  binary: {json.dumps(b['binaries'][binaries[0]])}",
            f"  pyav_decoder: {PYAV_DECODERS[codec]}",
        ]
        if cfgs:  # the CTC configurations: intra, then low delay
            cfg = Path(b["cfg"])
            lines += [
                "  variables:",
                f"    config_intra: {json.dumps(str(cfg / cfgs[0]))}",
                f"    config_lowdelay: {json.dumps(str(cfg / cfgs[1]))}",
            ]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for codec in SPECS:
        parser.add_argument(f"--{codec}", type=Path, default=None, metavar="SRC", help=f"{codec} source folder")
    parser.add_argument("--prefix", type=Path, default=Path.home() / ".local" / "fcm-codecs", help="install prefix")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel build jobs")
    args = parser.parse_args(argv)
    chosen = {c: getattr(args, c) for c in SPECS if getattr(args, c) is not None}
    if not chosen:
        parser.error("give at least one of --vvenc, --vtm, --hm (a source folder each)")
    for tool in ("cmake", "make"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (Debian: apt install cmake g++)")
    prefix = args.prefix.resolve()
    record = prefix / "built.json"  # every codec built into this prefix so far: a later run keeps them declared
    built = json.loads(record.read_text()) if record.is_file() else {}
    for codec, src in chosen.items():
        print(f"building {codec} from {src} …", file=sys.stderr)
        built[codec] = build(codec, src.resolve(), prefix, args.jobs)
    record.write_text(json.dumps(built, indent=2))
    yaml_path = prefix / "codecs.yaml"
    yaml_path.write_text(codecs_yaml(built))
    print(json.dumps({"prefix": str(prefix), "codecs_yaml": str(yaml_path), "built": built}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
