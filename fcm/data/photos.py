"""Natural photographs from Debian's desktop wallpaper packages, split by source into train, validation and test.

The photos are fetched once by ``python tools/fetch_photos.py`` (``apt-get download`` of each package below into the
photo cache, the package's sha256 checked, the listed photos extracted and each checked), then read from the cache:
nothing is downloaded at run time, and a missing or altered file is an error naming that command.

Each package lies in exactly one split (:data:`SPLITS`), so a model trained on ``train`` and tuned on ``validation``
is reported on pictures from another source, taken by other photographers:

* ``train`` — ``plasma-workspace-wallpapers`` (KDE Plasma 5.27): its 11 photographs (the other wallpapers are
  renders and drawings), each at its largest size; and ``opencv-doc`` (OpenCV 4.6's sample data): its 21 colour
  photographs (aerial views, fruit, a circuit board, buildings, animals, a football match, objects on a desk; the
  others are renders, drawings, logos, paintings, greyscale calibration shots or have transparency), 342–1110 px
  on the short side (13 of them enlarged to :data:`SHORT_SIDE`, by up to 1.5×);
* ``validation`` — ``lomiri-wallpapers-20.04`` (Ubuntu Touch): its 2 photographs;
* ``test`` — ``lomiri-wallpapers-16.04`` (Ubuntu Touch's wallpaper contest photos): 14 photographs.

Which wallpapers are photographs was decided once by looking at every image of these packages (and of
``gnome-backgrounds``, ``ukui-wallpapers``, ``desktop-base``, ``lomiri-wallpapers`` and ``sway-backgrounds``, which
hold none); the choice is this catalogue, with each file's sha256. Debian's ``mate-backgrounds`` is reserved for
external validation (:data:`RESERVED_PACKAGES`): fcm never fetches it, trains, tunes or evaluates on it.

Every photo is read at :data:`SHORT_SIDE` pixels on its short side (Lanczos), the size of a user's photo after a
typical camera-to-network resize; crops and scales are drawn from that.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from fcm.errors import ConfigError

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
#: packages never used for training, tuning or evaluation (held back for validation outside fcm)
RESERVED_PACKAGES = ("mate-backgrounds",)
#: short side, in pixels, every photo is read at
SHORT_SIDE = 512
FETCH_COMMAND = "python tools/fetch_photos.py"


@dataclass(frozen=True)
class PhotoFile:
    """One photograph of a package: its path inside the package and the sha256 of its bytes."""

    path: str
    sha256: str

    @property
    def name(self) -> str:
        """A short, stable name: the file's stem, or the wallpaper's folder name for Plasma's ``NAME/contents/…``."""
        parts = PurePosixPath(self.path).parts
        if "contents" in parts:
            return parts[parts.index("contents") - 1]
        return PurePosixPath(self.path).stem


@dataclass(frozen=True)
class PhotoPackage:
    """A Debian package that ships photographs, the version whose files are listed, and its split."""

    name: str
    version: str
    deb_sha256: str
    split: Split
    photos: tuple[PhotoFile, ...]

    def photo_ids(self) -> list[str]:
        return [f"{self.name}/{p.name}" for p in self.photos]


def _plasma(name: str, sha256: str, size: str = "2560x1600") -> PhotoFile:
    return PhotoFile(f"usr/share/wallpapers/{name}/contents/images/{size}.jpg", sha256)


def _backgrounds(name: str, sha256: str) -> PhotoFile:
    return PhotoFile(f"usr/share/backgrounds/{name}.jpg", sha256)


def _opencv(file: str, sha256: str) -> PhotoFile:
    return PhotoFile(f"usr/share/doc/opencv-doc/examples/data/{file}", sha256)


#: the photo packages, one split each (module doc)
CATALOGUE: tuple[PhotoPackage, ...] = (
    PhotoPackage(
        "plasma-workspace-wallpapers",
        "4:5.27.5-2",
        "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b",
        "train",
        (
            _plasma("BytheWater", "c272434ef39f2abf1ed48a15a8910088020f3165329a5092f3940ec9464bc05f"),
            _plasma("ColdRipple", "05bef6722fc0ed81292cceb3ed026c38d17e510f3c84be7d68610c2b1a723c3f"),
            _plasma("DarkestHour", "8e3703fae3a3c217b1fc2b399b706cd3720584268d071ba153e4809daa55f1ce"),
            _plasma("EveningGlow", "586682dcb362b9f620068f10138f87d0d3649939aef238adc5807cb951976a7a"),
            _plasma("FallenLeaf", "95603a6560c7e8d50e0e03b3f4adbe39c5258c72528e74e4ecaea1daf4e499de"),
            _plasma("Grey", "88c31d8944b7e6935d1b9a296654c692f0772cb512491713eb30a972a604c0ed"),
            _plasma("Kite", "bdca288ce296a981e80659c021cf707caddc702c0c8d4247e60bd618476d47f8"),
            _plasma("OneStandsOut", "cb507baf1dafdcae362264f3aba9483ed4be5f6c9fdd770f0ec0920c6d9e80fd"),
            _plasma("Path", "7477457d7f17b736259f1b021864778ad4ba802cf3214e6728181ff29126bba8"),
            _plasma("summer_1am", "c868b50789591dd42910153c768053f1ba0a98cb36bbfc2b7a96a1045d0477f8"),
            _plasma("Volna", "abc30b4fc6f6a83b6156e6b59ac283c067de40af820aafac8ac7c4fd83a9607c", "5120x2880"),
        ),
    ),
    PhotoPackage(
        "opencv-doc",
        "4.6.0+dfsg-12",
        "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a",
        "train",
        (
            _opencv("aero1.jpg", "d9a69191f6e3642ea361bc3c62e677b2f40fe6534b78da540f4155e0734b59ef"),
            _opencv("aero3.jpg", "1c407146f8762b3b14a7953ff9bc4c01ed64c467d7277122e769bf7e816017a4"),
            _opencv("aloeL.jpg", "cce5736808efe80d9f04b118dbb978c344d4345672b332718c3e039a3eeb8eee"),
            _opencv("apple.jpg", "e86879de3d9a807dedc742a8f464f39e6b74bbb531a1fba3583155d94997d1cd"),
            _opencv("baboon.jpg", "1a1dd18d78eec44420af3b0b7f08ee3d41c982916cae3ce203d7ff35d754cc0f"),
            _opencv("board.jpg", "4c9a24ba67138ad5486d550f586cc5dd1161be112f1c1bea336d6c550cdf255f"),
            _opencv("building.jpg", "742a1baad62ac82e91e718e77eedf7e85c2eddc4badfb8c87c6cbc86c45a8b07"),
            _opencv("butterfly.jpg", "34a99716b78ded10eae87b4880de739d3e68cc7dd1a96812bb28f469d5eeaea8"),
            _opencv("ela_original.jpg", "b55798b35e2dcb24675f0865a2442d0e4887eeb6aff322ecb1968d936cc23e7f"),
            _opencv("fruits.jpg", "9c031d80a1c52da5eca790db896baffec6a7e52bf786cdb7bbfca5c7f880e6a1"),
            _opencv("graf1.png", "1504b769303c7bde00fa578eeaad3c68e02aceabeb1242e556f1f8d19e4bdea5"),
            _opencv("home.jpg", "23b8cf46a1965d0ec33459b875aed43187802834db49e0daa9fa2cc842e9d8d2"),
            _opencv("left.jpg", "fb314330c3eb0a81651c682803e73b348898157267fbc37c4c2c07d1b3a8e321"),
            _opencv("leuvenA.jpg", "b2977cdbd9fb3f94dadd6f76cf586d145676deb8a22b5f0f42149d21c058c09f"),
            _opencv("licenseplate_motion.jpg", "ea6fa9cea75df91bec656d1d3b903111a9c0708c6a3b88f405a5156de38ff9d6"),
            _opencv("messi5.jpg", "1d570e49654e84c7a943918537bd9e5e1ef82920152e147c834006e235be97c9"),
            _opencv("orange.jpg", "152c20d2f380ac985de25e474e1a5f06ed34b932191342099b8272a63a15a079"),
            _opencv("rubberwhale1.png", "eb312435369dac9efcc92f7e098edbd9ed8d7e6dfede8b3b4d8e3702cd80b796"),
            _opencv("smarties.png", "ad3f751c053fdcf432687c1bc0e56a61a9119d2bb2ae29365f8aa6534fc77417"),
            _opencv("squirrel_cls.jpg", "20bb6e8ae96918a36c9886b6d48e54eedeb3948591e1485c206bc1dc60c8dc8b"),
            _opencv("stuff.jpg", "21cd00afbdd0727f445dd91c0a09633e6345ed5b05a3d2355453a1f3c314c6c5"),
        ),
    ),
    PhotoPackage(
        "lomiri-wallpapers-20.04",
        "20.04.0-2",
        "d44e89b8473aafe64a5b678f014862dc31335aaaf18665c544d985d854f1a709",
        "validation",
        (
            _backgrounds("Infinite-Sea_by_Aury88", "9319dfb3651833881339a8d9b769b99efaf474969e6cd58e427eb2524aca8e8a"),
            _backgrounds(
                "Kleiber_by_Lukas_Baubkus", "6572410c09f4492c74ccadde133565a14c0161617d5917d4c820c66d65a44ba7"
            ),
        ),
    ),
    PhotoPackage(
        "lomiri-wallpapers-16.04",
        "20.04.0-2",
        "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab",
        "test",
        (
            _backgrounds(
                "Bridge_by_Sander_Klootwijk", "bd86b081f9975e2b83527f71e49b9271a8ab40885428395969d9f7d834d7f050"
            ),
            _backgrounds("Dragonfly_by_Bolly", "af5af17841009732def24b09bb1e669a1b09d2b4bdeee7812c371101c30d2bb3"),
            _backgrounds("Picture_0B_by_freespace", "c8c0ab18e48d9e0419fe42881112137f3afafc27dfddc29ec3a6d54c56d225ad"),
            _backgrounds("Picture_1A_by_freespace", "89e86af38d04daaef975665dc2127e9fa76f0fd68f4eea105a2d0ae3390b010b"),
            _backgrounds("Wine_by_Jakkub_Mede", "d2e96e6d4da40dd804b3d0ce295e94de04a2d7d9b6785d42cd9d92ba58bced74"),
            _backgrounds(
                "aitzgorri_by_Aitzol_Berasategi", "66268e7b48f8854d36a28765fac6e23ec1aee251daa6da1f64715f201020ad36"
            ),
            _backgrounds(
                "analogpattern_by_Peter_Nerlich", "15372488a192b2be2eafc67bd3ed31cbfca19abe3929e925607fcbc9cb4d4202"
            ),
            _backgrounds("free_by_Peter_Nerlich", "85a5453c2fed514c75973016f3d862aca62eb7ca087618822469274ac1092373"),
            _backgrounds(
                "friends_by_Aitzol_Berasategi", "cc40e313c74e421edffe3403def413c16878ce14661cce7ec5915baeab35538d"
            ),
            _backgrounds(
                "greentock_by_Peter_Nerlich", "e7b20e2db9dcd6e2b278ca55873c2110b35d89cd38b04d0b18728726888e6889"
            ),
            _backgrounds(
                "life_by_Aitzol_Berasategi", "4c119350ead80201fe256850c3d316309ddfb4bdf10b235ce982dcde0c667c05"
            ),
            _backgrounds(
                "picosdeeuropa_by_Aitzol_Berasategi", "414d0072b2f6f2c555deafeaef6e45c4fed6fa9ad26eba6560ca8803959cf97a"
            ),
            _backgrounds(
                "seeding_by_Clements_Engelhardt", "a5634d1ab5e41a3568e92d4a894a500c92b891f9ff734e50bd224d6e185a605f"
            ),
            _backgrounds(
                "sunset_by_Aitzol_Berasategi", "474dab6a4b9f94dc76c29dfe30e9f5db4af0fd2e33fe5d695f8152b371efca18"
            ),
        ),
    ),
)


def photos_root() -> Path:
    """The photo cache: ``$FCM_PHOTOS``, else ``$FCM_DATA/photos``, else ``~/.cache/fcm/photos``."""
    if os.environ.get("FCM_PHOTOS"):
        return Path(os.environ["FCM_PHOTOS"])
    return Path(os.environ.get("FCM_DATA", Path.home() / ".cache" / "fcm")) / "photos"


def package(name: str) -> PhotoPackage:
    for p in CATALOGUE:
        if p.name == name:
            return p
    if name in RESERVED_PACKAGES:
        raise ConfigError(f"{name} is reserved for validation outside fcm: never trained, tuned or evaluated on")
    raise ConfigError(f"unknown photo package {name!r}; known: {', '.join(p.name for p in CATALOGUE)}")


def cached_path(pkg: PhotoPackage, photo: PhotoFile, root: Path | None = None) -> Path:
    """Where the fetch script puts ``photo`` of ``pkg``: ``ROOT/PACKAGE/NAME.SUFFIX``."""
    return (root or photos_root()) / pkg.name / (photo.name + PurePosixPath(photo.path).suffix)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@cache
def _checked(path: Path, sha256: str, mtime_ns: int, size: int) -> bool:
    return sha256_of(path) == sha256


def check_photo(pkg: PhotoPackage, photo: PhotoFile, root: Path | None = None) -> Path:
    """The cached file of ``photo``, its bytes checked against the catalogue; a :class:`ConfigError` naming the
    fetch command when it is missing or altered."""
    path = cached_path(pkg, photo, root)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ConfigError(
            f"photo {pkg.name}/{photo.name} is not in the photo cache {path.parent.parent}: run {FETCH_COMMAND} "
            "(or set FCM_PHOTOS to the folder it filled)"
        ) from None
    if not _checked(path, photo.sha256, stat.st_mtime_ns, stat.st_size):
        raise ConfigError(f"{path} is not the catalogued photo (sha256 differs): rerun {FETCH_COMMAND}")
    return path


def split_photos(split: str, root: Path | None = None) -> list[tuple[str, Path]]:
    """``(id, path)`` of every photo of ``split`` (ids ``PACKAGE/NAME``), each file checked."""
    if split not in SPLITS:
        raise ConfigError(f"unknown photo split {split!r}; known: {', '.join(SPLITS)}")
    return [
        (f"{pkg.name}/{photo.name}", check_photo(pkg, photo, root))
        for pkg in CATALOGUE
        if pkg.split == split
        for photo in pkg.photos
    ]


def find_photo(photo_id: str) -> tuple[PhotoPackage, PhotoFile]:
    """The catalogue entry of photo ``PACKAGE/NAME`` (no file is touched)."""
    name, _, photo_name = photo_id.partition("/")
    pkg = package(name)
    for photo in pkg.photos:
        if photo.name == photo_name:
            return pkg, photo
    raise ConfigError(f"package {name} has no catalogued photo {photo_name!r}; known: {', '.join(pkg.photo_ids())}")


def photo_by_id(photo_id: str, root: Path | None = None) -> tuple[Split, Path]:
    """The split and checked file of photo ``PACKAGE/NAME``."""
    pkg, photo = find_photo(photo_id)
    return pkg.split, check_photo(pkg, photo, root)


def load_photo(
    path: Path, short_side: int = SHORT_SIDE, box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
) -> np.ndarray:
    """A cached photo as ``uint8`` RGB: the region ``box`` (top, left, height, width as fractions) at full
    resolution, then its short side resized to ``short_side`` (Lanczos)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        full_w, full_h = rgb.size
        top, left, bh, bw = box
        if box != (0.0, 0.0, 1.0, 1.0):
            rgb = rgb.crop(
                (round(left * full_w), round(top * full_h), round((left + bw) * full_w), round((top + bh) * full_h))
            )
        w, h = rgb.size
        scale = short_side / min(w, h)
        if scale != 1.0:
            rgb = rgb.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
        return np.ascontiguousarray(np.asarray(rgb))
