"""User-declared external codecs (VTM, VVenC, HM, … on the user's machine), read from a YAML file.

The file maps codec names to an external template and overrides, for example::

    vtm:
      template: vtm                       # one of fcm.codecs.external.TEMPLATES
      encoder_cmd: /opt/vtm/bin/EncoderApp -c {config} -i {input} -b {output} ...   # optional override
      pyav_decoder: vvc      # or decoder_cmd: "/opt/vtm/bin/DecoderApp -b {input} -o {output} -d {bit_depth}"
      variables: {config: /opt/vtm/cfg/encoder_intra_vtm.cfg}
      bit_depths: [8, 10]
      qp_range: [0, 63]

Load it with :func:`load_codec_file` (the ``fcm --codecs FILE`` option does), or name it in the ``FCM_CODECS``
environment variable, which is read the first time an unregistered codec name is asked for. Parallel sweep workers
load the same files. A bitstream records the codec name, so the decoding side needs the same declaration.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fcm.errors import ConfigError

ENV_VAR = "FCM_CODECS"
_STRING_FIELDS = (
    "encoder_cmd",
    "decoder_cmd",
    "pyav_decoder",
    "default_preset",
    "option_template",
    "binary",
    "decoder_binary",
)
_FIELDS = {
    "template",
    "variables",
    "bit_depths",
    "qp_range",
    "timeout_s",
    "input_chroma",
    "decoded_chroma",
    "qp_map_block",
    *_STRING_FIELDS,
}
#: resolved paths of the files loaded in this process, in load order (sent to sweep workers)
_loaded: list[str] = []
_env_checked = False


def loaded_files() -> list[str]:
    return list(_loaded)


def _spec(name: str, raw: Any) -> dict[str, Any]:
    """Type-check one declaration; every problem is a ConfigError naming the codec and the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"codec {name!r}: expected a mapping of settings, got {raw!r}")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise ConfigError(f"codec {name!r}: unknown keys {unknown}; known: {', '.join(sorted(_FIELDS))}")
    if "template" not in raw:
        raise ConfigError(f"codec {name!r}: 'template' is required (x265-cli, vtm, hm, vvenc)")
    spec = dict(raw)
    for key in ("template", *_STRING_FIELDS):
        if key in spec and not isinstance(spec[key], str):
            raise ConfigError(f"codec {name!r}: {key} must be a string, got {spec[key]!r}")
    for key in ("input_chroma", "decoded_chroma"):
        if key in spec:
            spec[key] = str(spec[key])  # YAML reads 400 as a number
    if "bit_depths" in spec:
        depths = spec["bit_depths"]
        if not isinstance(depths, list) or not depths or not all(type(v) is int for v in depths):
            raise ConfigError(f"codec {name!r}: bit_depths must be a list of integers, got {depths!r}")
        spec["bit_depths"] = tuple(depths)
    if "qp_range" in spec:
        qp = spec["qp_range"]
        if not (isinstance(qp, list) and len(qp) == 2 and all(type(v) is int for v in qp) and qp[0] <= qp[1]):
            raise ConfigError(f"codec {name!r}: qp_range must be [low, high] integers, got {qp!r}")
        spec["qp_range"] = tuple(qp)
    if "timeout_s" in spec:
        t = spec["timeout_s"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0:
            raise ConfigError(f"codec {name!r}: timeout_s must be a positive number of seconds, got {t!r}")
    if "variables" in spec:
        variables = spec["variables"]
        if not isinstance(variables, dict):
            raise ConfigError(f"codec {name!r}: variables must be a mapping, got {variables!r}")
        spec["variables"] = {str(k): str(v) for k, v in variables.items()}
    return spec


def load_codec_file(path: str | Path) -> list[str]:
    """Register every codec declared in ``path``; returns their names. Loading the same file twice is a no-op.

    All declarations are checked and built before any is registered, so a bad file registers nothing.
    """
    from fcm.codecs.external import external_codec
    from fcm.codecs.registry import CODECS, register_codec
    from fcm.yaml_files import read_mapping

    p = Path(path).resolve()
    if str(p) in _loaded:
        return []
    raw = read_mapping(p, "codec file")
    specs = {str(name): _spec(str(name), value) for name, value in raw.items()}
    taken = sorted(set(specs) & set(CODECS.names()))
    if taken:
        raise ConfigError(f"{p} declares codec names that are already registered: {taken}; choose other names")
    factories = {}
    for name, spec in specs.items():
        template = spec.pop("template")
        try:
            external_codec(template, name=name, **spec)  # build once now, so a bad declaration fails here
        except TypeError as e:
            raise ConfigError(f"codec {name!r}: {e}") from e
        factories[name] = lambda template=template, name=name, spec=spec: external_codec(template, name=name, **spec)
    for name, factory in factories.items():
        register_codec(name, factory)
    _loaded.append(str(p))
    return list(specs)


def load_from_environment() -> list[str]:
    """Register the codecs of the file named by ``$FCM_CODECS`` (once per process; a failure is raised each time)."""
    global _env_checked
    if _env_checked:
        return []
    path = os.environ.get(ENV_VAR)
    if not path:
        _env_checked = True
        return []
    try:
        names = load_codec_file(path)
    except ConfigError as e:
        raise ConfigError(f"${ENV_VAR}: {e}") from e
    _env_checked = True
    return names
