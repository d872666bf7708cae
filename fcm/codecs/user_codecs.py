"""User-declared external codecs (VTM, VVenC, HM, … on the user's machine), read from a YAML file.

The file maps codec names to an external template and overrides, for example::

    vtm:
      template: vtm                       # one of fcm.codecs.external.TEMPLATES
      encoder_cmd: /opt/vtm/bin/EncoderApp -c {config} -i {input} -b {output} ...   # optional override
      pyav_decoder: vvc                   # or decoder_cmd: "/opt/vtm/bin/DecoderApp -b {input} -o {output} -d {bit_depth}"
      variables: {config: /opt/vtm/cfg/encoder_intra_vtm.cfg}
      bit_depths: [8, 10]
      qp_range: [0, 63]

The ``fcm`` command reads it from ``--codecs FILE`` or the ``FCM_CODECS`` environment variable (sweep workers
inherit the variable), and then ``--codec vtm`` or ``codecs: [vtm]`` in a sweep use it. A bitstream records the codec
name, so the decoder side needs the same declaration.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fcm.errors import ConfigError

ENV_VAR = "FCM_CODECS"
_FIELDS = {"template", "encoder_cmd", "decoder_cmd", "pyav_decoder", "variables", "bit_depths", "qp_range",
           "default_preset", "option_template", "timeout_s", "input_chroma", "decoded_chroma"}
_loaded: set[str] = set()


def _spec(name: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"codec {name!r}: expected a mapping of settings, got {raw!r}")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise ConfigError(f"codec {name!r}: unknown keys {unknown}; known: {', '.join(sorted(_FIELDS))}")
    if "template" not in raw:
        raise ConfigError(f"codec {name!r}: 'template' is required (x265-cli, vtm, hm, vvenc)")
    spec = dict(raw)
    for key in ("bit_depths", "qp_range"):
        if key in spec:
            if not isinstance(spec[key], list) or not all(isinstance(v, int) for v in spec[key]):
                raise ConfigError(f"codec {name!r}: {key} must be a list of integers, got {spec[key]!r}")
            spec[key] = tuple(spec[key])
    if "variables" in spec and not isinstance(spec["variables"], dict):
        raise ConfigError(f"codec {name!r}: variables must be a mapping, got {spec['variables']!r}")
    return spec


def load_codec_file(path: str | Path) -> list[str]:
    """Register every codec declared in ``path``; returns their names. Loading the same file twice is a no-op."""
    p = Path(path)
    key = str(p.resolve())
    if key in _loaded:
        return []
    _loaded.add(key)  # first, since the registry calls back here while we register
    try:
        return _register(p)
    except BaseException:
        _loaded.discard(key)
        raise


def _register(p: Path) -> list[str]:
    import yaml

    from fcm.codecs import codec_names, register_codec
    from fcm.codecs.external import external_codec

    if not p.is_file():
        raise ConfigError(f"codec file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {e}") from e
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{p} must map codec names to their settings")
    specs = {str(name): _spec(str(name), value) for name, value in raw.items()}
    taken = sorted(set(specs) & set(codec_names()))
    if taken:
        raise ConfigError(f"{p} redefines built-in codec names {taken}; choose other names")
    for name, spec in specs.items():
        template = spec.pop("template")
        external_codec(template, name=name, **spec)  # build once now, so a bad declaration fails here
        register_codec(name, lambda template=template, name=name, spec=spec: external_codec(template, name=name, **spec))
    return list(specs)


def load_from_environment() -> list[str]:
    """Register the codecs of the file named by ``$FCM_CODECS``, if set."""
    path = os.environ.get(ENV_VAR)
    return load_codec_file(path) if path else []
