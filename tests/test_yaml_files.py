"""Every YAML file fcm reads (sweep configs, codec files) refuses repeated keys and reports errors on one line."""

import pytest

from fcm.errors import ConfigError
from fcm.eval.config import SweepConfig
from fcm.yaml_files import read_mapping

CONFIG = """\
name: t
dataset: {kind: embedded, photos: [coffee], variants: 1}
model: efficientnet_lite0
codecs: [x265]
qps: [27]
output: out
"""


def test_a_repeated_key_is_refused_with_file_line_and_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG + "qps: [37]\n")
    with pytest.raises(ConfigError) as e:
        SweepConfig.from_yaml(path)
    assert str(e.value) == f"{path}:7:1: duplicate key 'qps' (first on line 5)"


def test_a_repeated_key_in_a_nested_mapping_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG.replace("variants: 1}", "variants: 1, photos: [rocket]}"))
    with pytest.raises(ConfigError, match=r"c\.yaml:2:\d+: duplicate key 'photos' \(first on line 2\)"):
        SweepConfig.from_yaml(path)


def test_a_repeated_key_in_a_codec_file_is_refused(tmp_path):
    from fcm.codecs.user_codecs import load_codec_file

    path = tmp_path / "codecs.yaml"
    path.write_text("my-hevc:\n  template: x265-cli\n  encoder_cmd: x265\n  template: x264-cli\n")
    with pytest.raises(ConfigError, match=r"codecs\.yaml:4:3: duplicate key 'template' \(first on line 2\)$"):
        load_codec_file(path)


def test_merge_keys_may_still_be_overridden(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\n")
    assert read_mapping(path, "file")["d"] == {"x": 3, "y": 2}


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("a: 1\nb: c: d\n", "2:5", "mapping values are not allowed here"),
        ("a: 1\nb: [1, 2\nc: 3\n", "3:2", "expected ',' or ']', but got ':' (while parsing a flow sequence)"),
        ('a: "open\n', "2:1", "found unexpected end of stream (while scanning a quoted scalar)"),
    ],
)
def test_malformed_yaml_is_one_line_with_file_line_and_column(tmp_path, text, where, problem):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        read_mapping(path, "config file")
    assert str(e.value) == f"{path}:{where}: not valid YAML: {problem}"
