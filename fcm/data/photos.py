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
  on the short side (13 of them enlarged to :data:`SHORT_SIDE`, by up to 1.5×); and ``gcompris-qt-data`` (the
  GCompris educational suite): 122 photographs of seven activities (animals, monuments, landscapes and castles,
  musicians, reefs), read out of its Qt resource bundles (``.rcc``), 416–1080 px on the short side; left out are
  its drawings, icons, paintings, a greyscale photo, one framed in black and one of an object on white;
* ``validation`` — ``lomiri-wallpapers-20.04`` (Ubuntu Touch): its 2 photographs;
* ``test`` — ``lomiri-wallpapers-16.04`` (Ubuntu Touch's wallpaper contest photos): 14 photographs.

Which wallpapers are photographs was decided once by looking at every image of these packages (and of
``gnome-backgrounds``, ``ukui-wallpapers``, ``desktop-base``, ``lomiri-wallpapers`` and ``sway-backgrounds``, which
hold none); the choice is this catalogue, with each file's sha256. Debian's ``mate-backgrounds`` is reserved for
external validation (:data:`RESERVED_PACKAGES`): fcm never fetches it, trains, tunes or evaluates on it.

Every photo is read at :data:`SHORT_SIDE` pixels on its short side (Lanczos), the size of a user's photo after a
typical camera-to-network resize; crops and scales are drawn from that.

Over 500 lines: most of it is :data:`CATALOGUE`, every photo's name and sha256 (data kept beside the code that
checks it, so a photo and its checksum cannot drift apart); the code is about 200 lines.
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
    """One photograph of a package: its path inside the package and the sha256 of its bytes. A photo shipped inside a
    Qt resource bundle (an ``.rcc`` file, as GCompris ships its pictures) names the bundle's path in the package as
    ``archive``; ``path`` is then the photo's path inside the bundle."""

    path: str
    sha256: str
    archive: str | None = None

    @property
    def name(self) -> str:
        """A short, stable name: the file's stem, the wallpaper's folder name for Plasma's ``NAME/contents/…``, or
        ``BUNDLE-STEM`` for a photo inside a resource bundle (two bundles may hold pictures of one name)."""
        parts = PurePosixPath(self.path).parts
        if self.archive is not None:
            return f"{PurePosixPath(self.archive).stem}-{PurePosixPath(self.path).stem}"
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


def _gcompris(activity: str, file: str, sha256: str) -> PhotoFile:
    """A photo of one GCompris activity: ``file`` inside that activity's resource bundle."""
    bundle = f"usr/share/gcompris-qt/rcc/{activity}.rcc"
    return PhotoFile(f"gcompris/src/activities/{activity}/{file}", sha256, bundle)


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
        "gcompris-qt-data",
        "3.1-2",
        "e9cf06ab2105529068df73085784e835d2ff03f870d2a8091f09125d40abac9f",
        "train",
        (
            _gcompris(
                "erase", "resource/alpaca.webp", "ffd29864f09bf7439144e8da04d772fb455cfe9891d50e60ae70b99a16e42d5e"
            ),
            _gcompris("erase", "resource/bee.webp", "810de9fea0499e4d1a7584c8b62b509ef1c404d9bec3094d53aeb8a77abdc7b2"),
            _gcompris(
                "erase", "resource/butterfly.webp", "e12b50bb4ee6bb36bd4e3ab428a2d1ea87d5390b5a6a4aa189b10950a1925860"
            ),
            _gcompris(
                "erase", "resource/calf.webp", "5957d392349d9016e0b6a2ca900ebd12a6a6eed6b21a1fb69111d1fabbca3973"
            ),
            _gcompris(
                "erase", "resource/camels.webp", "df4da85790b8a403f5095e796d042f28f8386831a4970ab4b3035746ae038edc"
            ),
            _gcompris(
                "erase", "resource/caterpillar.webp", "1aca9fcc5a0e3e9f2b2bc7d0f231e509f935dd8207b064e7c1810e0466e9403a"
            ),
            _gcompris(
                "erase", "resource/chamaeleon.webp", "8a338c7df32949c5a5e1fef4b901d554b1c1af71c6a5bd81882522c11e0c41e5"
            ),
            _gcompris(
                "erase", "resource/cheetah.webp", "b9d85c2e2899036e7b0caf458696586adf63d431e5034362bb48a0abd8d29149"
            ),
            _gcompris(
                "erase", "resource/crab.webp", "822be2d08adc89a71e6eeff1500eea684c6f0961c98ddb1b23f0e66bbae4f987"
            ),
            _gcompris(
                "erase", "resource/dolphin.webp", "2847f84c4c9698a9b55124145dd679868da1239b0f174db8f2c83e173cbb9d8c"
            ),
            _gcompris(
                "erase", "resource/flying_fox.webp", "076622230f0634c0ef952f8f197280262db2355205c22f0c8f7731a13557c54a"
            ),
            _gcompris(
                "erase", "resource/gibbon.webp", "a7b242c4b014e7e37f2f3fac95c841c49e2dea5d5aa886e2ab4758e0372af9f8"
            ),
            _gcompris(
                "erase", "resource/giraffe.webp", "c39106edc785a65bf0eee10bf039375b2fc3f72b405d76fec392a1a40b39d4f0"
            ),
            _gcompris(
                "erase", "resource/goat.webp", "acba63337c11582a5cc3fd97573e4fefd353da82e63a06f1947cdbb11f49b7bd"
            ),
            _gcompris(
                "erase", "resource/gorilla.webp", "5ce6131ce966f585b263e2f04cbd504dd7366f99885ca3cbef12aa25d559b5d4"
            ),
            _gcompris(
                "erase", "resource/gosling.webp", "dab7bc930f6fe4f7a32db0b8f1bd86d905db50d8aa2e646522c428c731a80853"
            ),
            _gcompris(
                "erase", "resource/heron.webp", "63006dabe8b74b826eba8d8d80c4330ff38f57fd3e1010254f4644d830c48067"
            ),
            _gcompris(
                "erase", "resource/horse.webp", "15b49393342bf7de3fef6c1bb083cc7b643fa90b5b46e1a344833eb1d515a795"
            ),
            _gcompris(
                "erase", "resource/kingfisher.webp", "b637658d7e0f8f555b5683a8c912646d57ba37be6ba9684df893a1d07ee9e637"
            ),
            _gcompris(
                "erase", "resource/kitten.webp", "c6f3a52585a3d6179c78e15375a9d9b11f37bfd0ac33b477f3b67cda06c59727"
            ),
            _gcompris(
                "erase",
                "resource/long_nosed_monkey.webp",
                "7dcb1048527339524e6decd296d4bf8c22d74415fe5d6fcaa3354ae17530bf86",
            ),
            _gcompris(
                "erase", "resource/macaque.webp", "3a97a3c854c6d93cc67cc608e569ed0e6157f22cd5dd7e118fb0a42641eeada8"
            ),
            _gcompris(
                "erase", "resource/meerkats.webp", "459198d83393a1835c76861d901144d209a0bead29f4b9d2ef5b472eeab01fdd"
            ),
            _gcompris(
                "erase",
                "resource/northern_harrier.webp",
                "e2b2f388dc6f92ce2ea0f40f2d8d2d1ec6e8a135d05986cae67a7d0330c1ac26",
            ),
            _gcompris(
                "erase", "resource/nubian_ibex.webp", "5268033ecc366dbcf949a06e62361785a7be788dfa2b1ad343e7ded8104cfaf2"
            ),
            _gcompris(
                "erase", "resource/penguin.webp", "1c8be6df0a6ff161ad49a789b5699f842b18f5dc93bf6b66fd5f1342266643b2"
            ),
            _gcompris(
                "erase", "resource/pika.webp", "1c8a4014d079380622c55d15afe6cad5bb53c42b09eb5b4e7bec8f127fdd063f"
            ),
            _gcompris(
                "erase", "resource/red_panda.webp", "ec755f7b9d8953037161a7cf4f01270fdc92382913b33d987ceb27c1dfa6ded1"
            ),
            _gcompris(
                "erase", "resource/rhinoceros.webp", "250140eb6d3a0af11b87c084ce18a6c41a8ed679c97ef758b58ba54e04b11f9c"
            ),
            _gcompris(
                "erase", "resource/spoonbills.webp", "f67d7d04bf3ba2270953db11be657fc3fc7292d4d070891f5164fef5b1665f96"
            ),
            _gcompris(
                "erase", "resource/squirrel.webp", "56bdd761a41440bdd47eae4aa75b1703f9d24c5d09c8352f9b462deaa6b9b96f"
            ),
            _gcompris(
                "erase", "resource/swans.webp", "5fe69699bf37d702c3ca9b2b76c727aff717494ba368272952e05ac233028eda"
            ),
            _gcompris(
                "erase", "resource/toucan.webp", "977b0ff4277075a4ef79e0c335276fd5a2ae68f8bf366503fd33203c49f82b04"
            ),
            _gcompris(
                "explore_monuments",
                "resource/egypt/bentPyramid.webp",
                "ca717a088d790a901ffa1b03162c5cc438f99924d457f988263f158a7cc2cb38",
            ),
            _gcompris(
                "explore_monuments",
                "resource/egypt/greatPyramidOfGiza.webp",
                "f8427c09579493e7918d00134423ed40140c2f3fa09fb13341d3c1a0640fc1e9",
            ),
            _gcompris(
                "explore_monuments",
                "resource/egypt/meidumPyramid.webp",
                "694a4eaebc52849aacf802383bc5c755c0fff97b8342a4ef733c7a36c6e6aa53",
            ),
            _gcompris(
                "explore_monuments",
                "resource/egypt/redPyramid.webp",
                "7df87dfe904e18fee2062e8dba2cbfc5c7b807e27c688b271a7380000865c2cf",
            ),
            _gcompris(
                "explore_monuments",
                "resource/france/arlesAmphitheater.webp",
                "62d80a80ca5e5040bdb87c6f2fb57fa333d9b190c9a41066e4017cd4268656d9",
            ),
            _gcompris(
                "explore_monuments",
                "resource/france/chateaudeChambord.webp",
                "a96693bfff66c9a747a066b8d798aaf876427de969603c4125bf881f8af0ac2d",
            ),
            _gcompris(
                "explore_monuments",
                "resource/france/chateaudeChenonceau.webp",
                "4e414fc35ae9b4e18e3219d6278287fb720e89facd332fef9a1c4fe9c3c3adc3",
            ),
            _gcompris(
                "explore_monuments",
                "resource/france/citedeCarcassonne.webp",
                "b9de4b334e76df53df948de034f4bcc744be682a904ad7c61a9f9f7ac8de326b",
            ),
            _gcompris(
                "explore_monuments",
                "resource/france/eiffelTower.webp",
                "cf115ede228937f0dfea0ffd7efa5fa24a948f388091ce1a123e7636b25c080b",
            ),
            _gcompris(
                "explore_monuments",
                "resource/france/montStMichel.webp",
                "1c097b958c4bc0e52384e572c3e3ed70abbb54e9b4936cd0852320e1ce12561e",
            ),
            _gcompris(
                "explore_monuments",
                "resource/france/palaisdesPapes.webp",
                "fded6367850d2fafaf5ecad961ba51efbdc0c3d3171f7cc058d2ccfd2e6897e6",
            ),
            _gcompris(
                "explore_monuments",
                "resource/france/pontduGard.webp",
                "b9e560a9ae2fd919baec7f5ceb08877d57194e614481b25058693a88c232897f",
            ),
            _gcompris(
                "explore_monuments",
                "resource/france/reimsCathedral.webp",
                "720ddce0a3124d68e306008c152fb19ec2a2917b3609ba8a31607cffaf52c2d2",
            ),
            _gcompris(
                "explore_monuments",
                "resource/france/rocamadour.webp",
                "e9642c03c23004248bcdf0a364d9828625ba5ef75f82e4a10bfdf2b16bd0a18c",
            ),
            _gcompris(
                "explore_monuments",
                "resource/germany/aulaPalatina.webp",
                "5b39680425fca3ff5f56b3bd79d11683a46a009d66ef23445e165ea72524b3cb",
            ),
            _gcompris(
                "explore_monuments",
                "resource/germany/berlinCathedral.webp",
                "b552994f64727ceaa04218d6a5e7a86b08cb8b550c1eeae0b010f857286d308e",
            ),
            _gcompris(
                "explore_monuments",
                "resource/germany/brandenburgGate.webp",
                "2cb312c79a20e0cd8ed865c5b15a95af86d8d95a0ab96da8814c073857abf4bb",
            ),
            _gcompris(
                "explore_monuments",
                "resource/germany/neuschwansteinCastle.webp",
                "15ec5fcb8758d54efa65581b9682e5cc766d700f3f329d700a06d0550d2c8e03",
            ),
            _gcompris(
                "explore_monuments",
                "resource/germany/schwerinPalace.webp",
                "91be8dd19821221b2b3c30a78cb43a17d8017751a1d36acd751b1e9417acbbae",
            ),
            _gcompris(
                "explore_monuments",
                "resource/germany/trierImperialBaths.webp",
                "dd1818360d153c095e227157d128e498fe9b29437594e8e5c663184cad4120fb",
            ),
            _gcompris(
                "explore_monuments",
                "resource/germany/wormsCathedral.webp",
                "c90cdcbf981bcd5f118b553b059448db6fb0bfe801b40240e02ccd2975b92a59",
            ),
            _gcompris(
                "explore_monuments",
                "resource/india/ajantaCave.webp",
                "7dbf980b3711f7557ed4d5748e494c48f72ac34ff601cf1a46f272ff9ab20543",
            ),
            _gcompris(
                "explore_monuments",
                "resource/india/charminar.webp",
                "a657a2139787bded963966d92b4ff9825327572e5e73d4badc1ac52cc063db0f",
            ),
            _gcompris(
                "explore_monuments",
                "resource/india/gatewayofIndia.webp",
                "8d1053776a85a9703f819ae6a82f981cbfa9a8961712404afee235afd87a0e48",
            ),
            _gcompris(
                "explore_monuments",
                "resource/india/goldenTemple.webp",
                "ec52355726f8c36c78f0db526dc0fd8c823f5572a5ced04e8914a82a7b496a8c",
            ),
            _gcompris(
                "explore_monuments",
                "resource/india/greatStupa.webp",
                "3b6741152471d00646271d3a413c08af0533766f09dc87af19abb9ff71801886",
            ),
            _gcompris(
                "explore_monuments",
                "resource/india/hawaMahal.webp",
                "4edb7eed9db596bd7f3ad98eb34a82c04c32ff1d57aeec80a815c1248feb8e04",
            ),
            _gcompris(
                "explore_monuments",
                "resource/india/konarkSunTemple.webp",
                "c94ddb83bb2d878fecaf0677e8e6c1e73ede7dd39bd69f5e84d2f68e84515156",
            ),
            _gcompris(
                "explore_monuments",
                "resource/india/mysorePalace.webp",
                "a84a26be8d9447341e5235dd319acc71a49f2d91c8dd55a17a89867c64a580c0",
            ),
            _gcompris(
                "explore_monuments",
                "resource/india/qutubMinar.webp",
                "dea912cbd3950dacbba8cd810e39713525c27d54e58ce6ba7502a0f83cf24c95",
            ),
            _gcompris(
                "explore_monuments",
                "resource/india/rangGhar.webp",
                "41791947f8772c9bf483ddb13a4fa4dfbbd1eef44f29937a99eebc5361d981a2",
            ),
            _gcompris(
                "explore_monuments",
                "resource/india/victoriaMemorial.webp",
                "be7b3264cd3391e5b50714e0cec31f2e23e658498b5aba584a4b9aaf526dc51e",
            ),
            _gcompris(
                "explore_monuments",
                "resource/usa/canyondeChelly.webp",
                "2148fe45a54186a6e8bc4a395bbbffa0e3530e65232ceda5b841397a0d031bfb",
            ),
            _gcompris(
                "explore_monuments",
                "resource/usa/castillodeSanMarcos.webp",
                "b1d3584272eb66d8211a9cb71a3647e88597986f8020eca9691c488282ea9a88",
            ),
            _gcompris(
                "explore_monuments",
                "resource/usa/fortSumter.webp",
                "42c8376f99f770fa9daa92afb8cde44dc58dd3282b10c5ba8fabec02ea4b9643",
            ),
            _gcompris(
                "explore_monuments",
                "resource/usa/lincolnMemorial.webp",
                "52eab4d110bd168e644c9152a60a911cdd8ba5e3d4b661e966f256a074f66fb8",
            ),
            _gcompris(
                "explore_monuments",
                "resource/usa/mountRushmore.webp",
                "d9fec7d6ac491a64c5dab74fed447054e9d188dc9732715bef12bd63909e87c8",
            ),
            _gcompris(
                "explore_monuments",
                "resource/usa/navajo.webp",
                "fa8d36162b1380ac7998ab32d82f7b86b390cdce830acd807ef314291cc03ee5",
            ),
            _gcompris(
                "explore_monuments",
                "resource/usa/statueofLiberty.webp",
                "8eeda3c92c734520b4b7865eb04a900402a329890064058bcb4448d21669a3a8",
            ),
            _gcompris(
                "explore_monuments",
                "resource/wonders/chichenItza.webp",
                "9882593801be435822f1d948afb36b171ed7fc7a301dfa74b11df5ea9afaf681",
            ),
            _gcompris(
                "explore_monuments",
                "resource/wonders/christTheRedeemer.webp",
                "3133f2872b3d791595296fd4bf4812654326e01f5c7cd2d870765bfd6772fa2b",
            ),
            _gcompris(
                "explore_monuments",
                "resource/wonders/colosseum.webp",
                "0d38a0c2d4910f895c003825999345a86da080ff76d709bba923153cbd654945",
            ),
            _gcompris(
                "explore_monuments",
                "resource/wonders/greatWallofChina.webp",
                "546e2483d17c2b732ce375d946afba6fc612166abcd6d976217747a982b60777",
            ),
            _gcompris(
                "explore_monuments",
                "resource/wonders/machuPicchu.webp",
                "e04e163ccef6e59411dff15c3459768b2f442fe2ff5042369d9a480f1f272068",
            ),
            _gcompris(
                "explore_monuments",
                "resource/wonders/petra.webp",
                "cc782ccdd5b508299ad17402df2d0d375c26e1f9b18e4d2e6c3fd474fcaeb458",
            ),
            _gcompris(
                "explore_monuments",
                "resource/wonders/tajMahal.webp",
                "fc0d45ec5a258568858c70d2d78eb23a5eb769255d74b384f70c20422d2eb351",
            ),
            _gcompris(
                "explore_world_animals",
                "resource/animals/bison.webp",
                "11f3b2c5b876ee083924ff3ffab233c3e1d161993605b67d4d2ab5a9f1d9cf25",
            ),
            _gcompris(
                "explore_world_animals",
                "resource/animals/chameleon.webp",
                "f3ececf0133c1301227fdea62d74bce7bcc0d138b048714b116aa4a0744260d5",
            ),
            _gcompris(
                "explore_world_animals",
                "resource/animals/crocodile.webp",
                "840cf54b69bf4fb9a14a99fe502e237ad36e7230c146ca884b7b0e444ec12534",
            ),
            _gcompris(
                "explore_world_animals",
                "resource/animals/dragon.webp",
                "fc36683cc2069ac83ae84f2da61c2774149d1a1dcb99820380b724ca50d3532e",
            ),
            _gcompris(
                "explore_world_animals",
                "resource/animals/giraffe.webp",
                "68014ed783cf6a8b8c9c4202cf2c467a34819dab08bf566e93d5fcd872e41f5c",
            ),
            _gcompris(
                "explore_world_animals",
                "resource/animals/hedgehog.webp",
                "780aceaa624415db1f6ff304ed13e804572686316e69d21ee0e13856ef173f7e",
            ),
            _gcompris(
                "explore_world_animals",
                "resource/animals/jaguar.webp",
                "22704727b6643480c62487ffb2d9fd618a3f499dde84b1eb789d4b0b11477e85",
            ),
            _gcompris(
                "explore_world_animals",
                "resource/animals/kangaroo.webp",
                "683964b6f57fdced539b3da8983ef4f4c9d78a0be3e251363fc5a17d4fb4fe7e",
            ),
            _gcompris(
                "explore_world_animals",
                "resource/animals/koala.webp",
                "77b243c27d79f3f5706497af5c1e8e9134f87d634def2b81e2074b572b575d18",
            ),
            _gcompris(
                "explore_world_animals",
                "resource/animals/lemur.webp",
                "4fccf91dd5e6a749d9eb621f982e6a0d7072830db91ba0daabcd86b1de7a9747",
            ),
            _gcompris(
                "explore_world_animals",
                "resource/animals/moose.webp",
                "2252a671c2e0ade9ce6ff6d41957348a81ebccfd952ba59bfddceff0b059ea48",
            ),
            _gcompris(
                "explore_world_animals",
                "resource/animals/narwhal.webp",
                "2a94d2fc7482ca806ce60210031f167782f7407ed47cd721371355e2ab575afc",
            ),
            _gcompris(
                "explore_world_animals",
                "resource/animals/panda.webp",
                "70ccf9a9db5008100eb6955ae25fabd4f7769427be784d627cf6315f6dfce692",
            ),
            _gcompris(
                "explore_world_animals",
                "resource/animals/polar_bear.webp",
                "0544cef0a7d6940d3c143a04eecb7065bf9b90d7d367ad8bacbef6631b506070",
            ),
            _gcompris(
                "explore_world_animals",
                "resource/animals/scarlet_macaw.webp",
                "8b088ed71a87e7e929cf08b49a1e1c977c47544307d348e52a0f4a85128662a0",
            ),
            _gcompris(
                "explore_farm_animals",
                "resource/animals/cat.webp",
                "ab7c3e1b04e80bc567b00dba49946918b5a38be1f37618f0d2b4887ef5792770",
            ),
            _gcompris(
                "explore_farm_animals",
                "resource/animals/chicken.webp",
                "30a07d3c7dfc191ff4d160826ad14babb4cfb9cb47b15ec8a098857f135bfcd4",
            ),
            _gcompris(
                "explore_farm_animals",
                "resource/animals/cow.webp",
                "db359136be5ef7c435a2521e7f782a7f13ab48634f8a955864b1557ca21926db",
            ),
            _gcompris(
                "explore_farm_animals",
                "resource/animals/dog.webp",
                "5e9d9544495740101e4cfff817d986b683731112b2cf17fde2e4c2a26c3c5314",
            ),
            _gcompris(
                "explore_farm_animals",
                "resource/animals/duck.webp",
                "fa4572f2022a3aded4b627b9234fb8abf1658d125b267dc8d28cb1a8213c3b60",
            ),
            _gcompris(
                "explore_farm_animals",
                "resource/animals/horse.webp",
                "87879a9644b71713f52aadf22562f30cc3e6e25a36e07d602a90e0cf6ec888aa",
            ),
            _gcompris(
                "explore_farm_animals",
                "resource/animals/owl.webp",
                "e8b7d705a955799f02eb3e8ded6487991d2c5c8274fee828ac75c0b917b3e237",
            ),
            _gcompris(
                "explore_farm_animals",
                "resource/animals/pig.webp",
                "4f3d27d1fd3d0b3c0482d72a7b62101c133329f95427dcb3fb1319e69d53b7c8",
            ),
            _gcompris(
                "explore_farm_animals",
                "resource/animals/sheep.webp",
                "3bac61d5dabb709cdea2511f63bab6bfcde9736536a39f1f7510f5258a75b088",
            ),
            _gcompris(
                "explore_world_music",
                "resource/music/africa.webp",
                "c4b27aebe08498a882efa57ebc1ac2798ae2173228656f107cd8bff6098b5acf",
            ),
            _gcompris(
                "explore_world_music",
                "resource/music/america.webp",
                "72af64588442d1e251ed33568629d35bf88b3fa348def66265320571bdda0927",
            ),
            _gcompris(
                "explore_world_music",
                "resource/music/australia.webp",
                "b7e0bc6da6f9fd8b2ae453f9a4a7021e5439bbd8944d4566b938134c0fa24951",
            ),
            _gcompris(
                "explore_world_music",
                "resource/music/ireland.webp",
                "20ef5a10a55b03632dc5fec2434c3a7814c15abbbe7489dedb4aa97ee6b111af",
            ),
            _gcompris(
                "explore_world_music",
                "resource/music/italy.webp",
                "b30a023e5d36bb053a4ee8e57bd0b4fa2042e3d0a5ab8e663a341ba6e35672ad",
            ),
            _gcompris(
                "explore_world_music",
                "resource/music/japan.webp",
                "0f0aa2d3116e01acdc693b626b1b60699124145670e624121289a7ced5020679",
            ),
            _gcompris(
                "explore_world_music",
                "resource/music/mexico.webp",
                "cd1286e5d7649bc446a47297f0127a38295e5a5f39a641b528e0c5063675c9d1",
            ),
            _gcompris(
                "explore_world_music",
                "resource/music/orchestra.webp",
                "b4a6d85a40cefbd33cc6801ffcbb3ad7026d8d79be134c753b4f12b0b862cedf",
            ),
            _gcompris(
                "clickgame", "resource/sea1.webp", "a3a8c196d24f6c37fc2e9bebd421ffa339485cf511fc2c3258ba9e5a17076170"
            ),
            _gcompris(
                "clickgame", "resource/sea2.webp", "533dcc0d871a390d5ee648ce1b4cfbccb41890cc1e514e5966f3cc02550d75a4"
            ),
            _gcompris(
                "clickgame", "resource/sea3.webp", "9c8236a6ade2a59fb05dfe03802cd9aa5d5e672c85731b136847287c33265974"
            ),
            _gcompris(
                "clickgame", "resource/sea4.webp", "21295e109d35b0f11a9c8dd17524be6212571cb28fad56613be1f8789a261f5e"
            ),
            _gcompris(
                "clickgame", "resource/sea5.webp", "08c6d1ae0ea47c5136137148c817472da329ca1e67063b0fb3e60190e5c55b00"
            ),
            _gcompris(
                "clickgame", "resource/sea6.webp", "42f7a4152c54f8bf065e8ad182472729a5374a6860c573a4de1ea0987e026cf3"
            ),
            _gcompris(
                "details",
                "resource/image/EgeskovSlotSpejling_background.webp",
                "6ba38f91b6f6f53c4c105c57f647bd43d11b737293f23b1cef1806a81b872106",
            ),
            _gcompris(
                "details",
                "resource/image/EilanDonanCastle_background.webp",
                "cd94fbfc2ef05477d23688eb24401fb8b8dd550f6eb0aa2b8cbcb6f646c7a62f",
            ),
            _gcompris(
                "details",
                "resource/image/GizahPyramids_background.webp",
                "71946fdfe1a1dab7b081b97a53fe4d2beed6eaf8bf02e0df7ecf4a1974bbe7db",
            ),
            _gcompris(
                "details",
                "resource/image/Neuschwanstein_background.webp",
                "b973a69611d3ff8ed554879d08d31d8876faaf4c20ee76e0c8ff36922cd15b34",
            ),
            _gcompris(
                "details",
                "resource/image/TajMahal_background.webp",
                "9c2796c2a415cfd3b2ba20f52d7da5935298d00f208028b6c6d25d5d680b0cfb",
            ),
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
