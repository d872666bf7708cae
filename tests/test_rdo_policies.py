"""The RDO policy registry (fcm.rdo.policies): the contract every registered policy meets, and the control policy
``wa-uniform``."""

from __future__ import annotations

import numpy as np
import pytest

from fcm import pipeline
from fcm.codecs import CodecParams
from fcm.errors import ConfigError
from fcm.rdo import RDO_POLICIES, RdoPolicy, RdoSettings, build_allocation, build_policy, rdo_modes


def test_every_registered_policy_meets_the_contract(tmp_path):
    assert {"sse", "wa-frame", "wa-gop", "wa-fixed", "wa-uniform"} <= set(rdo_modes())
    for name in rdo_modes():
        cls = RDO_POLICIES.get(name)
        assert issubclass(cls, RdoPolicy) and cls.name == name
        settings = RdoSettings(mode=name, map_path=str(tmp_path / "m.npz") if cls.takes_map else None)
        identity = settings.identity()
        assert identity["mode"] == name
        if not cls.makes_map:
            assert identity == {"mode": name}
        assert ("probes" in identity) == cls.estimates_weights  # estimator settings count only where used
        assert isinstance(build_policy(settings), cls)


def test_an_unknown_mode_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown rdo mode 'wa-magic'; known: .*wa-uniform"):
        RdoSettings(mode="wa-magic")
    with pytest.raises(ConfigError, match="only used by a mode that reads one"):
        RdoSettings(mode="wa-uniform", map_path="x.npz")


def test_uniform_weights_through_the_qp_map_give_the_codecs_own_bytes(lite0, chelsea):
    """The control: an all-zero offset map, delivered through x265's per-block QP map, changes nothing — so any
    difference a wa-* policy makes is its weights'."""
    from fcm.packing import Packer

    params = CodecParams(qp=32, rate_control="crf")
    alloc = build_allocation(RdoSettings(mode="wa-uniform"))
    plain = pipeline.encode(chelsea, lite0, "x265", params)
    uniform = pipeline.encode(chelsea, lite0, "x265", params, allocation=alloc)
    assert uniform.bitstream == plain.bitstream
    edge = pipeline.run_front(chelsea, lite0)
    packed = Packer(10).pack(edge.features.tensors)
    n, h, w = packed.frames.shape
    offsets = alloc.offsets(packed, lite0, edge.features.meta, None)
    assert offsets is not None and offsets.dtype == np.int32 and not offsets.any()
    assert offsets.shape == (n, -(-h // 16), -(-w // 16))
    # a real policy does change the bytes (else the comparison above could not fail)
    weighted = pipeline.encode(chelsea, lite0, "x265", params, allocation=build_allocation(RdoSettings("wa-frame")))
    assert weighted.bitstream != plain.bitstream


def test_a_sweep_label_names_the_new_policy(tmp_path):
    from fcm.eval.pipelines import FeaturePipeline

    rdo = FeaturePipeline._rdo_from("feature[wa-uniform]", {}, variant_sets_mode=True)
    assert rdo.mode == "wa-uniform" and rdo.identity()["mode"] == "wa-uniform"
