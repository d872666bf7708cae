"""The photo splits (fcm.data.photos), the fetch script and the photo sources of training and sweeps."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from fcm.data import photos
from fcm.data.photos import CATALOGUE, RESERVED_PACKAGES, SPLITS, PhotoFile, PhotoPackage
from fcm.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("fetch_photos", ROOT / "tools" / "fetch_photos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _jpeg(seed: int) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG")
    return out.getvalue()


def _deb(path: Path, files: dict[str, bytes]) -> None:
    """A minimal Debian package (an ar archive of debian-binary, control.tar.xz and data.tar.xz) holding ``files``."""

    def tar_xz(entries: dict[str, bytes]) -> bytes:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:xz") as tar:
            for name, data in entries.items():
                info = tarfile.TarInfo("./" + name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return out.getvalue()

    control = b"Package: fake-photos\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"
    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", tar_xz({"control": control})),
        ("data.tar.xz", tar_xz(files)),
    ]
    blob = bytearray(b"!<arch>\n")
    for name, data in members:
        blob += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        blob += data + (b"\n" if len(data) % 2 else b"")
    path.write_bytes(bytes(blob))


def _fake_package(tmp_path: Path, split: str = "train") -> tuple[PhotoPackage, Path]:
    debs = tmp_path / "debs"
    debs.mkdir()
    files = {f"usr/share/backgrounds/p{i}.jpg": _jpeg(i) for i in range(2)}
    deb = debs / "fake-photos_1_all.deb"
    _deb(deb, files)
    pkg = PhotoPackage(
        "fake-photos",
        "1",
        hashlib.sha256(deb.read_bytes()).hexdigest(),
        split,  # type: ignore[arg-type]
        tuple(PhotoFile(name, hashlib.sha256(data).hexdigest()) for name, data in files.items()),
    )
    return pkg, debs


def test_each_source_lies_in_exactly_one_split_and_the_reserved_one_in_none():
    names = [p.name for p in CATALOGUE]
    assert len(set(names)) == len(names)  # a package appears once, so in one split
    assert {p.split for p in CATALOGUE} == set(SPLITS)  # every split has a source
    assert not set(names) & set(RESERVED_PACKAGES)
    by_split: dict[str, set[str]] = {s: set() for s in SPLITS}
    for pkg in CATALOGUE:
        by_split[pkg.split] |= {p.sha256 for p in pkg.photos}
        assert len({p.name for p in pkg.photos}) == len(pkg.photos)  # ids are unique within a package
    assert not by_split["train"] & by_split["validation"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["validation"] & by_split["test"]
    assert len(by_split["test"]) >= 14 and len(by_split["train"]) >= 11
    with pytest.raises(ConfigError, match="reserved for validation outside fcm"):
        photos.package("mate-backgrounds")


def test_the_fetch_script_extracts_exactly_the_catalogued_photos(tmp_path):
    tool = _tool()
    pkg, debs = _fake_package(tmp_path)
    cache = tmp_path / "cache"
    assert tool.fetch(pkg, cache, debs) == 2
    for photo in pkg.photos:
        path = photos.check_photo(pkg, photo, cache)
        assert path == cache / "fake-photos" / f"{photo.name}.jpg"
        assert photos.load_photo(path, 80).shape == (80, 120, 3)  # short side 40 → 80, aspect kept
    assert tool.fetch(pkg, cache, debs) == 0  # a rerun finds the photos in place and fetches nothing
    # a photo altered in the cache is refused by fcm, and the script writes it again
    altered = cache / "fake-photos" / "p0.jpg"
    altered.write_bytes(b"not the photo")
    with pytest.raises(ConfigError, match=r"not the catalogued photo \(sha256 differs\): rerun python tools/fetch"):
        photos.check_photo(pkg, pkg.photos[0], cache)
    assert tool.fetch(pkg, cache, debs) == 1
    assert photos.check_photo(pkg, pkg.photos[0], cache) == altered


def test_a_package_whose_photo_differs_is_refused_and_nothing_is_left(tmp_path):
    tool = _tool()
    pkg, debs = _fake_package(tmp_path)
    wrong = PhotoPackage(pkg.name, pkg.version, pkg.deb_sha256, pkg.split, (PhotoFile(pkg.photos[0].path, "0" * 64),))
    with pytest.raises(SystemExit, match="is not the catalogued photo"):
        tool.fetch(wrong, tmp_path / "cache", debs)
    assert not list((tmp_path / "cache").rglob("*.jpg*"))
    missing = PhotoPackage(pkg.name, pkg.version, pkg.deb_sha256, pkg.split, (PhotoFile("usr/none.jpg", "0" * 64),))
    with pytest.raises(SystemExit, match=r"has no usr/none\.jpg"):
        tool.fetch(missing, tmp_path / "cache", debs)


def test_a_missing_photo_cache_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("FCM_PHOTOS", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"not in the photo cache .*run python tools/fetch_photos.py"):
        photos.split_photos("test")
    with pytest.raises(ConfigError, match="unknown photo split 'tune'"):
        photos.split_photos("tune")


def test_training_takes_train_photos_and_refuses_the_others(tmp_path, monkeypatch):
    from fcm.train.config import TrainConfig
    from fcm.train.data import resolve_sources

    monkeypatch.setenv("FCM_PHOTOS", str(tmp_path / "empty"))
    test_photo = f"photo:{CATALOGUE[-1].photo_ids()[0]}"
    assert CATALOGUE[-1].split == "test"
    with pytest.raises(ConfigError, match="is a test photo: only train photos are for training"):
        resolve_sources([test_photo])
    with pytest.raises(ConfigError, match="only the train split is for training"):
        resolve_sources(["photos:validation"])
    with pytest.raises(ConfigError, match=r"run python tools/fetch_photos\.py"):
        resolve_sources(["photos:train"])  # refused before any training when the photos are not fetched
    with pytest.raises(ConfigError, match=r"opencv-doc/aero1 is not in the photo cache"):
        resolve_sources(["photos:train:opencv-doc"])
    with pytest.raises(ConfigError, match=r"lomiri-wallpapers-20\.04 is a validation package; only train packages"):
        resolve_sources(["photos:train:lomiri-wallpapers-20.04"])
    with pytest.raises(ConfigError, match="name a train package after 'photos:train:'"):
        resolve_sources(["photos:train:"])
    with pytest.raises(ConfigError, match="unknown photo package 'nope'"):
        resolve_sources(["photos:train:nope"])
    with pytest.raises(ConfigError, match="reserved for validation outside fcm"):
        resolve_sources(["photos:train:mate-backgrounds"])
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(_jpeg(0))
    (folder / "sub" / "b.jpg").write_bytes(_jpeg(1))
    (folder / "notes.txt").write_text("not an image")
    sources = resolve_sources(["skimage:brick", f"folder:{folder}"])
    assert sources == (
        "skimage:brick",
        f"file:{(folder / 'a.jpg').resolve()}",
        f"file:{(folder / 'sub/b.jpg').resolve()}",
    )
    cfg = TrainConfig.from_config(
        {"images": [f"folder:{folder}"], "wrapper": {"name": "channel_reduction"}, "checkpoint": str(tmp_path / "w.pt")}
    )
    assert len(cfg.sources) == 2
    # a relative file: is the same file whatever the working directory the run is resumed from
    monkeypatch.chdir(folder)
    assert resolve_sources(["file:sub/b.jpg"]) == (f"file:{(folder / 'sub/b.jpg').resolve()}",)
    from fcm.train.data import load_source

    assert load_source(cfg.sources[0]).shape == (40, 60, 3)
    with pytest.raises(ConfigError, match=r"images: folder:.*no such folder"):
        TrainConfig.from_config(
            {
                "images": [f"folder:{tmp_path / 'none'}"],
                "wrapper": {"name": "channel_reduction"},
                "checkpoint": str(tmp_path / "w.pt"),
            }
        )
    with pytest.raises(ConfigError, match=r"unknown training source 'imagenet'.*folder:PATH"):
        resolve_sources(["imagenet"])


def test_sweeps_read_the_validation_and_test_photos_but_not_the_train_ones(tmp_path, monkeypatch):
    from fcm.data.datasets import PHOTO_VIEWS, build_dataset

    with pytest.raises(ConfigError, match="the train split is for training only"):
        build_dataset({"kind": "photos", "split": "train"})
    with pytest.raises(ConfigError, match="views must be"):
        build_dataset({"kind": "photos", "split": "test", "views": 9})
    monkeypatch.setenv("FCM_PHOTOS", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"run python tools/fetch_photos\.py"):
        build_dataset({"kind": "photos", "split": "test"})
    assert [name for name, _ in PHOTO_VIEWS] == ["whole", "centre", "left", "right"]


@pytest.mark.skipif(
    not all(photos.cached_path(p, f).is_file() for p in CATALOGUE for f in p.photos),
    reason="the photos are not fetched here: run python tools/fetch_photos.py",
)
def test_the_fetched_test_split_gives_every_view_of_every_photo():
    from fcm.data.datasets import build_dataset

    test = build_dataset({"kind": "photos", "split": "test"})
    assert len(test) == 14 * 4 and test[0].id.startswith("lomiri-wallpapers-16.04/")
    whole, centre = test[0].image(), test[1].image()
    assert min(whole.shape[:2]) == 512 and min(centre.shape[:2]) == 512 and whole.dtype == np.uint8
    assert not np.array_equal(whole[:100, :100], centre[:100, :100])


@pytest.mark.skipif(
    not all(photos.cached_path(p, f).is_file() for p in CATALOGUE for f in p.photos),
    reason="the photos are not fetched here: run python tools/fetch_photos.py",
)
def test_a_training_config_takes_the_train_split_or_one_of_its_packages():
    from fcm.train.data import load_source, resolve_sources

    plasma = resolve_sources(["photos:train:plasma-workspace-wallpapers"])
    opencv = resolve_sources(["photos:train:opencv-doc"])
    assert len(plasma) == 11 and all(s.startswith("photo:plasma-workspace-wallpapers/") for s in plasma)
    assert len(opencv) == 21 and all(s.startswith("photo:opencv-doc/") for s in opencv)
    gcompris = resolve_sources(["photos:train:gcompris-qt-data"])
    assert len(gcompris) == 122 and "photo:gcompris-qt-data/erase-alpaca" in gcompris
    assert resolve_sources(["photos:train"]) == plasma + opencv + gcompris  # the split, in catalogue order
    # jpg, png, a 384-px photo, a webp from a resource bundle
    for source in (
        opencv[0],
        "photo:opencv-doc/graf1",
        "photo:opencv-doc/home",
        "photo:gcompris-qt-data/details-TajMahal_background",
    ):
        image = load_source(source)
        assert image.dtype == np.uint8 and image.shape[2] == 3 and min(image.shape[:2]) == photos.SHORT_SIDE


def test_the_fetch_script_reads_packages_without_dpkg(tmp_path, monkeypatch):
    """Where dpkg-deb is missing, the script reads the .deb's ar archive and its data.tar.xz itself."""
    tool = _tool()
    pkg, debs = _fake_package(tmp_path)
    real_which = tool.shutil.which
    monkeypatch.setattr(tool.shutil, "which", lambda name: None if name == "dpkg-deb" else real_which(name))
    assert tool.fetch(pkg, tmp_path / "cache", debs) == 2
    assert all(photos.check_photo(pkg, p, tmp_path / "cache") for p in pkg.photos)
    (debs / "not-a-deb_1_all.deb").write_bytes(b"garbage")
    with pytest.raises(SystemExit, match="not a Debian package"):
        tool._data_tar(debs / "not-a-deb_1_all.deb")


def _rcc(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A Qt binary resource bundle (format 3, as ``rcc -binary`` writes it) of ``{path: (bytes, compressed)}``:
    folders breadth first, each folder's children contiguous, compressed files in qCompress form."""
    root: dict = {}
    for path, entry in files.items():
        node = root
        *folders, leaf = path.split("/")
        for folder in folders:
            node = node.setdefault(folder, {})
        node[leaf] = entry
    names, data, records = bytearray(), bytearray(), []
    entries: list[tuple[str, object]] = [("", root)]
    for index, (name, node) in enumerate(entries):  # grows while walked: breadth first
        name_offset = len(names) if index else 0
        if index:
            names += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
        if isinstance(node, dict):
            records.append(struct.pack(">IHII", name_offset, 0x02, len(node), len(entries)) + bytes(8))
            entries.extend(node.items())
        else:
            blob, compressed = node  # type: ignore[misc]
            body = struct.pack(">I", len(blob)) + zlib.compress(blob) if compressed else blob
            records.append(struct.pack(">IHHHI", name_offset, int(compressed), 0, 0, len(data)) + bytes(8))
            data += struct.pack(">I", len(body)) + body
    tree = b"".join(records)
    offsets = (24, 24 + len(tree), 24 + len(tree) + len(data))
    return b"qres" + struct.pack(">IIIII", 3, *offsets, 0) + tree + bytes(data) + bytes(names)


def test_the_fetch_script_takes_photos_out_of_qt_resource_bundles(tmp_path):
    """GCompris ships its photos inside .rcc bundles: the script reads the bundle format itself, plain and
    zlib-compressed entries alike, and the photos land in the cache under BUNDLE-STEM names."""
    tool = _tool()
    inner = {"app/act/resource/p0.jpg": (_jpeg(0), False), "app/act/resource/deep/p1.jpg": (_jpeg(1), True)}
    bundle = _rcc({**inner, "app/act/notes.txt": (b"x" * 999, True)})
    assert tool.read_qt_resources(bundle) == {**{k: v for k, (v, _) in inner.items()}, "app/act/notes.txt": b"x" * 999}
    assert tool.read_qt_resources(bundle, only=frozenset({"app/act/notes.txt"})) == {"app/act/notes.txt": b"x" * 999}
    debs = tmp_path / "debs"
    debs.mkdir()
    deb = debs / "fake-photos_1_all.deb"
    _deb(deb, {"usr/share/app/rcc/act.rcc": bundle})
    archive = "usr/share/app/rcc/act.rcc"
    pkg = PhotoPackage(
        "fake-photos",
        "1",
        hashlib.sha256(deb.read_bytes()).hexdigest(),
        "train",
        tuple(PhotoFile(path, hashlib.sha256(data).hexdigest(), archive) for path, (data, _) in inner.items()),
    )
    assert [p.name for p in pkg.photos] == ["act-p0", "act-p1"]
    cache = tmp_path / "cache"
    assert tool.fetch(pkg, cache, debs) == 2
    assert photos.check_photo(pkg, pkg.photos[1], cache) == cache / "fake-photos" / "act-p1.jpg"
    assert photos.load_photo(cache / "fake-photos" / "act-p1.jpg", 40).shape == (40, 60, 3)
    absent = PhotoPackage(
        pkg.name, pkg.version, pkg.deb_sha256, "train", (PhotoFile("app/none.jpg", "0" * 64, archive),)
    )
    with pytest.raises(SystemExit, match=r"act\.rcc has no app/none\.jpg"):
        tool.fetch(absent, tmp_path / "cache2", debs)


def test_a_damaged_or_hostile_resource_bundle_is_refused_naming_it():
    tool = _tool()
    good = _rcc({"a/p.jpg": (b"photo bytes" * 10, True)})
    refused = "act.rcc is not a readable Qt resource bundle"
    with pytest.raises(SystemExit, match=f"{refused}: no qres header"):
        tool.read_qt_resources(b"PK\x03\x04" + good[4:], "act.rcc")
    with pytest.raises(SystemExit, match=f"{refused}: format version 9"):
        tool.read_qt_resources(good[:4] + struct.pack(">I", 9) + good[8:], "act.rcc")
    for cut in (10, 30, len(good) - 20, len(good) - 3):  # truncated anywhere: header, tree, data, names
        with pytest.raises(SystemExit, match=refused):
            tool.read_qt_resources(good[:cut], "act.rcc")
    # a folder listing itself as its own child would loop for ever: refused
    tree = 24
    cyclic = bytearray(good)
    struct.pack_into(">II", cyclic, tree + 22 + 6, 1, 1)  # folder "a" (entry 1): one child, entry 1
    with pytest.raises(SystemExit, match=f"{refused}: tree entry 1 is reached twice"):
        tool.read_qt_resources(bytes(cyclic), "act.rcc")
    # a compressed entry claiming a huge size (a zip bomb) is refused before it is inflated
    data = struct.unpack_from(">I", good, 12)[0]
    bomb = bytearray(good)
    struct.pack_into(">I", bomb, data + 4, 1 << 31)
    with pytest.raises(SystemExit, match=f"{refused}: a/p.jpg claims 2147483648 bytes uncompressed"):
        tool.read_qt_resources(bytes(bomb), "act.rcc")
    lying = bytearray(good)
    struct.pack_into(">I", lying, data + 4, 5)
    with pytest.raises(SystemExit, match=f"{refused}: a/p.jpg decompresses to more than the 5 bytes it claims"):
        tool.read_qt_resources(bytes(lying), "act.rcc")
    zstd = bytearray(good)
    struct.pack_into(">H", zstd, tree + 2 * 22 + 4, 0x04)
    with pytest.raises(SystemExit, match=f"{refused}: a/p.jpg is zstd-compressed"):
        tool.read_qt_resources(bytes(zstd), "act.rcc")
    names = struct.unpack_from(">I", good, 16)[0]
    odd = bytearray(good)
    odd[names + 6 : names + 8] = b"\xdc\x00"  # a lone low surrogate as the first name's first code unit
    with pytest.raises(SystemExit, match=f"{refused}: the name at 0 is not UTF-16"):
        tool.read_qt_resources(bytes(odd), "act.rcc")
