"""Fetch the natural photographs fcm trains, tunes and tests on into the photo cache (see fcm.data.photos).

    python tools/fetch_photos.py [--cache DIR] [--debs DIR]

For each package of ``fcm.data.photos.CATALOGUE``: ``apt-get download PACKAGE=VERSION`` into ``--debs`` (kept, so a
rerun fetches nothing), its sha256 checked against the catalogue, and only the catalogued photographs extracted into
``--cache`` (default ``$FCM_PHOTOS``, ``$FCM_DATA/photos`` or ``~/.cache/fcm/photos``), each checked. A ``.deb``
already in ``--debs`` with the right checksum is used as it is (e.g. copied from a machine with a registry).
Prints a JSON summary: photos per split and package. ``mate-backgrounds`` is never fetched (reserved).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcm.data.photos import CATALOGUE, PhotoPackage, cached_path, photos_root, sha256_of  # noqa: E402


def _deb_for(pkg: PhotoPackage, debs: Path) -> Path:
    """A ``.deb`` of ``pkg`` with the catalogued checksum in ``debs``, downloaded there if none is."""
    for candidate in sorted(debs.glob(f"{pkg.name}_*.deb")):
        if sha256_of(candidate) == pkg.deb_sha256:
            return candidate
    if shutil.which("apt-get") is None:
        raise SystemExit(
            f"{pkg.name}: no apt-get here; put {pkg.name} {pkg.version} (sha256 {pkg.deb_sha256}) into {debs}"
        )
    print(f"[{pkg.name}] apt-get download {pkg.name}={pkg.version}", file=sys.stderr, flush=True)
    proc = subprocess.run(
        ["apt-get", "download", f"{pkg.name}={pkg.version}"], cwd=debs, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"{pkg.name}: apt-get download failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    for candidate in sorted(debs.glob(f"{pkg.name}_*.deb")):
        if sha256_of(candidate) == pkg.deb_sha256:
            return candidate
    raise SystemExit(
        f"{pkg.name}: the downloaded package is not the catalogued {pkg.version} (sha256 differs); the registry no "
        "longer serves it: fetch that version elsewhere into --debs"
    )


def _data_tar(deb: Path) -> tarfile.TarFile:
    """The file-system archive of a ``.deb`` (an ``ar`` archive holding ``data.tar.*``)."""
    if shutil.which("dpkg-deb"):
        data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    blob = deb.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise SystemExit(f"{deb} is not a Debian package (no ar header)")
    at = 8
    while at + 60 <= len(blob):
        name = blob[at : at + 16].decode().strip().rstrip("/")
        size = int(blob[at + 48 : at + 58].decode().strip())
        body = blob[at + 60 : at + 60 + size]
        if name.startswith("data.tar"):
            return tarfile.open(fileobj=io.BytesIO(body), mode="r:*")  # xz, gz, bz2 (zstd needs dpkg-deb)
        at += 60 + size + (size % 2)
    raise SystemExit(f"{deb} holds no data.tar")


def fetch(pkg: PhotoPackage, cache: Path, debs: Path) -> int:
    """Extract ``pkg``'s catalogued photos into ``cache``; returns how many were (re)written."""
    todo = [p for p in pkg.photos if not _ok(cached_path(pkg, p, cache), p.sha256)]
    if not todo:
        return 0
    deb = _deb_for(pkg, debs)
    with _data_tar(deb) as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
        for photo in todo:
            member = members.get(photo.path)
            if member is None:
                raise SystemExit(f"{deb.name} has no {photo.path}")
            source = tar.extractfile(member)
            assert source is not None
            target = cached_path(pkg, photo, cache)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".part")
            tmp.write_bytes(source.read())
            if sha256_of(tmp) != photo.sha256:
                tmp.unlink()
                raise SystemExit(f"{deb.name}: {photo.path} is not the catalogued photo (sha256 differs)")
            tmp.replace(target)
    return len(todo)


def _ok(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_of(path) == sha256


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None, help="photo cache (default: fcm's photo cache)")
    parser.add_argument("--debs", type=Path, default=None, help="where the .deb files are kept (default CACHE/debs)")
    args = parser.parse_args(argv)
    cache = args.cache or photos_root()
    debs = args.debs or cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    summary: dict[str, dict[str, int]] = {}
    written = 0
    for pkg in CATALOGUE:
        written += fetch(pkg, cache, debs)
        summary.setdefault(pkg.split, {})[pkg.name] = len(pkg.photos)
    print(json.dumps({"cache": str(cache), "written": written, "photos": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
