"""Datasets for sweeps: image-folder classification, COCO detection, label-free image sets, and the embedded default.

Every dataset is a sequence of :class:`Sample` (``len(ds)``, ``ds[i]``) with a ``name`` and a ``task``
(``"classification"``, ``"detection"`` or ``"unlabeled"``). Images load lazily, as RGB ``uint8`` arrays. Nothing is
ever downloaded: the embedded default is built from the real photographs inside scikit-image's wheel.
"""

from fcm.data.datasets import (
    CocoDetection,
    Dataset,
    EmbeddedPhotos,
    ImageFolderClassification,
    ImageSet,
    Sample,
    build_dataset,
)

__all__ = [
    "CocoDetection",
    "Dataset",
    "EmbeddedPhotos",
    "ImageFolderClassification",
    "ImageSet",
    "Sample",
    "build_dataset",
]
