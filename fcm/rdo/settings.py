"""What a config or the CLI says about bit allocation: :class:`RdoSettings`, one frozen value checked once.

The mode names an RDO policy (:mod:`fcm.rdo.policies`), which checks the settings it takes and says what of them
changes what it codes (:meth:`RdoSettings.identity`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fcm.errors import ConfigError
from fcm.rdo.maps import Preconditioning, block_means, precondition, qp_offsets
from fcm.rdo.targets import as_target

if TYPE_CHECKING:
    from fcm.models.base import SplitModel
    from fcm.rdo.policies import RdoPolicy

Route = Literal["qp", "scale"]
ROUTES: tuple[Route, ...] = ("qp", "scale")


def as_rdo_mode(value: str) -> str:
    """``value`` if a policy of that name is registered (:mod:`fcm.rdo.policies`), else a ConfigError."""
    from fcm.rdo.policies import RDO_POLICIES

    if isinstance(value, str) and value in RDO_POLICIES:
        return value
    raise ConfigError(f"unknown rdo mode {value!r}; known: {', '.join(RDO_POLICIES.names())}")


def as_route(value: str) -> Route:
    for route in ROUTES:
        if value == route:
            return route
    raise ConfigError(f"unknown rdo route {value!r}; known: {', '.join(ROUTES)}")


@dataclass(frozen=True)
class RdoSettings:
    """How the edge allocates bits across blocks (see the module docstring).

    Attributes:
        mode: a registered policy's name (:mod:`fcm.rdo.policies`): ``sse``, ``wa-frame``, ``wa-gop``, ``wa-fixed``.
        route: ``qp`` (per-block QP offsets: x264/x265, ``rate_control: crf``) or ``scale`` (per-block sample scaling:
            any codec and rate control).
        target: what the weights protect: ``kl`` (classifier output distribution), ``output`` or ``features``
            (see :mod:`fcm.rdo.sensitivity`); ``None``: ``kl`` for classifiers, ``features`` otherwise.
        probes: Rademacher probes per frame (0: exact Jacobian, only for tiny chains).
        seed: probe seed.
        precondition: clipping, smoothing and shrinkage of the weights.
        block: block side of the map (16: the encoders' quantizer groups).
        max_offset: ΔQP clip range ``±max_offset``.
        gop: frames per group for ``wa-gop``.
        map_path: the fixed map file for ``wa-fixed``.
    """

    mode: str = "sse"
    route: Route = "qp"
    target: str | None = None
    probes: int = 8
    seed: int = 0
    precondition: Preconditioning = field(default_factory=Preconditioning)
    block: int = 16
    max_offset: int = 6
    gop: int = 8
    map_path: str | None = None

    def __post_init__(self) -> None:
        as_rdo_mode(self.mode)
        as_route(self.route)
        if self.target is not None:
            as_target(self.target)
        for name, lo in (("probes", 0), ("seed", 0), ("block", 1), ("gop", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ConfigError(f"rdo {name} must be an integer >= {lo}, got {value!r}")
        qp_offsets(np.ones((1, 1, 1)), self.max_offset)  # validates max_offset
        if self.map_path is not None and not isinstance(self.map_path, str):
            raise ConfigError(f"rdo map must be the path of a .npz file, got {self.map_path!r}")
        self.policy_class.check_settings(self)
        if self.route == "scale":
            from fcm.rdo.scaling import MAX_STEP

            if not 4 <= self.block <= 256:
                raise ConfigError(f"rdo route 'scale' takes blocks of 4–256 samples, got {self.block}")
            if self.max_offset > MAX_STEP:
                raise ConfigError(f"rdo route 'scale' takes max_offset <= {MAX_STEP}, got {self.max_offset}")

    #: config keys :meth:`from_config` accepts
    KEYS = (
        "mode",
        "route",
        "target",
        "probes",
        "seed",
        "clip_percentile",
        "smooth",
        "tau",
        "block",
        "max_offset",
        "gop",
        "map",
    )

    @classmethod
    def from_config(cls, raw: dict[str, Any], where: str = "rdo") -> RdoSettings:
        """From a config mapping with keys :data:`KEYS` (``clip_percentile``, ``smooth``, ``tau`` flattened)."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{where} must be a mapping, got {raw!r}")
        unknown = sorted(set(raw) - set(cls.KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown settings {unknown}; known: {', '.join(cls.KEYS)}")
        pre = {k: raw[k] for k in ("clip_percentile", "smooth", "tau") if k in raw}
        rest = {k: raw[k] for k in cls.KEYS if k in raw and k not in pre and k != "map"}
        for key in ("mode", "route", "target"):
            if rest.get(key) is not None and not isinstance(rest[key], str):
                raise ConfigError(f"{where}: {key} must be a string, got {rest[key]!r}")
        try:
            return cls(precondition=Preconditioning(**pre), map_path=raw.get("map"), **rest)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None

    @property
    def policy_class(self) -> type[RdoPolicy]:
        """The registered policy the mode names."""
        from fcm.rdo.policies import RDO_POLICIES

        return RDO_POLICIES.get(as_rdo_mode(self.mode))

    @property
    def makes_map(self) -> bool:
        """False for the codec's own RDO (``sse``): no block map, nothing of the other settings matters."""
        return self.policy_class.makes_map

    def identity(self) -> dict[str, Any]:
        """The settings that change what this mode codes (for results folders), as its policy says."""
        return self.policy_class.identity(self)

    def to_config(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("precondition", "map_path")}
        out |= asdict(self.precondition)
        if self.map_path is not None:
            out["map"] = self.map_path
        return out

    def target_for(self, model: SplitModel | None) -> str:
        if self.target is not None:
            return self.target
        if model is None:
            return "features"
        from fcm.tasks import get_task

        return get_task(model.task).rdo_target

    def offsets_from_weights(self, weights: np.ndarray) -> np.ndarray:
        """Raw (or normalised) sample weights → the int32 block QP-offset map."""
        return qp_offsets(block_means(precondition(weights, self.precondition), self.block), self.max_offset)
