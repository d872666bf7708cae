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
import struct
import subprocess
import sys
import tarfile
import zlib
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


#: Qt resource-bundle entry flags (qtbase src/corelib/io/qresource.cpp)
_QRC_COMPRESSED, _QRC_DIRECTORY, _QRC_COMPRESSED_ZSTD = 0x01, 0x02, 0x04
#: the most bytes one compressed bundle entry may expand to (a photo is a few MB; a zip bomb is refused)
_QRC_MAX_FILE = 256 << 20


def read_qt_resources(
    blob: bytes, origin: str = "resource bundle", only: frozenset[str] | None = None
) -> dict[str, bytes]:
    """The files of a Qt binary resource bundle (``rcc -binary``, format versions 1–3) as ``{path: bytes}``; with
    ``only``, just those paths are read out (the rest of the tree is still walked and checked).

    Layout: ``qres``, then big-endian version, tree, data and names offsets (and, from version 3, a flags word). Each
    tree entry (14 bytes, 22 from version 2 with a modification time) holds a name offset and flags, then either a
    child count and first child (a folder) or locale and a data offset (a file). A file's data is its 4-byte size,
    then its bytes, zlib-compressed behind a 4-byte length when flagged. Every offset is bounds-checked, so a
    truncated or hostile bundle is a ``SystemExit`` naming ``origin``, never a wrong file or a hang."""

    def fail(why: str) -> SystemExit:
        return SystemExit(f"{origin} is not a readable Qt resource bundle: {why}")

    def u32(at: int) -> int:
        if at < 0 or at + 4 > len(blob):
            raise fail(f"offset {at} lies outside its {len(blob)} bytes")
        return int(struct.unpack_from(">I", blob, at)[0])

    def u16(at: int) -> int:
        if at < 0 or at + 2 > len(blob):
            raise fail(f"offset {at} lies outside its {len(blob)} bytes")
        return int(struct.unpack_from(">H", blob, at)[0])

    if blob[:4] != b"qres":
        raise fail("no qres header")
    version, tree, data, names = u32(4), u32(8), u32(12), u32(16)
    if version not in (1, 2, 3):
        raise fail(f"format version {version} (known: 1, 2, 3)")
    entry_size = 14 if version == 1 else 22

    def name_at(offset: int) -> str:
        length = u16(names + offset)
        start = names + offset + 6  # length, then a 4-byte hash, then UTF-16 code units
        if start + 2 * length > len(blob):
            raise fail(f"a name at {offset} runs past the end")
        try:
            return blob[start : start + 2 * length].decode("utf-16-be")
        except UnicodeDecodeError:
            raise fail(f"the name at {offset} is not UTF-16") from None

    files: dict[str, bytes] = {}
    seen: set[int] = set()
    pending = [(0, "")]
    while pending:
        index, prefix = pending.pop()
        if index in seen:  # each entry once: a cyclic tree cannot loop
            raise fail(f"tree entry {index} is reached twice")
        seen.add(index)
        at = tree + index * entry_size
        name = name_at(u32(at)) if index else ""
        flags = u16(at + 4)
        path = f"{prefix}/{name}" if prefix else name
        if flags & _QRC_DIRECTORY:
            count, first = u32(at + 6), u32(at + 10)
            if first + count > (len(blob) - tree) // entry_size:
                raise fail(f"folder {path or '/'} lists {count} entries past the end of its tree")
            pending.extend((child, path) for child in range(first, first + count))
            continue
        start = data + u32(at + 10)
        size = u32(start)
        if start + 4 + size > len(blob):
            raise fail(f"{path} runs past the end")
        if only is not None and path not in only:
            continue
        body = blob[start + 4 : start + 4 + size]
        if flags & _QRC_COMPRESSED_ZSTD:
            raise fail(f"{path} is zstd-compressed, which this reader does not decode")
        if flags & _QRC_COMPRESSED:  # qCompress: a 4-byte uncompressed length, then a zlib stream
            expected = u32(start + 4) if size >= 4 else -1
            if not 0 <= expected <= _QRC_MAX_FILE:
                raise fail(f"{path} claims {expected} bytes uncompressed (at most {_QRC_MAX_FILE} are read)")
            try:
                body = zlib.decompressobj().decompress(body[4:], expected + 1)
            except zlib.error as e:
                raise fail(f"{path} does not decompress ({e})") from None
            if len(body) != expected:
                more = "more than" if len(body) > expected else f"{len(body)} bytes, not"
                raise fail(f"{path} decompresses to {more} the {expected} bytes it claims")
        files[path] = body
    return files


def _member_bytes(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], where: str, deb: Path) -> bytes:
    member = members.get(where)
    if member is None:
        raise SystemExit(f"{deb.name} has no {where}")
    source = tar.extractfile(member)
    assert source is not None
    return source.read()


def fetch(pkg: PhotoPackage, cache: Path, debs: Path) -> int:
    """Extract ``pkg``'s catalogued photos into ``cache``; returns how many were (re)written."""
    todo = [p for p in pkg.photos if not _ok(cached_path(pkg, p, cache), p.sha256)]
    if not todo:
        return 0
    deb = _deb_for(pkg, debs)
    with _data_tar(deb) as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
        bundles: dict[str, dict[str, bytes]] = {}  # a bundle is parsed once, however many photos it holds
        for photo in todo:
            if photo.archive is None:
                blob = _member_bytes(tar, members, photo.path, deb)
            else:
                if photo.archive not in bundles:
                    bundle = _member_bytes(tar, members, photo.archive, deb)
                    wanted = frozenset(p.path for p in todo if p.archive == photo.archive)
                    bundles[photo.archive] = read_qt_resources(bundle, f"{deb.name}: {photo.archive}", wanted)
                found = bundles[photo.archive].get(photo.path)
                if found is None:
                    raise SystemExit(f"{deb.name}: {photo.archive} has no {photo.path}")
                blob = found
            target = cached_path(pkg, photo, cache)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".part")
            tmp.write_bytes(blob)
            if sha256_of(tmp) != photo.sha256:
                tmp.unlink()
                where = f"{photo.archive}: {photo.path}" if photo.archive else photo.path
                raise SystemExit(f"{deb.name}: {where} is not the catalogued photo (sha256 differs)")
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
