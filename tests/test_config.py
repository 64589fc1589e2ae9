"""Device configs: the shipped ones load; every kind of mistake names the file, the key and what is allowed."""

import re
from pathlib import Path

import pytest
from firstwords.edge.config import (
    QUANTIZATION_FORMATS,
    load_device_config,
    resolve_device_config,
    shipped_configs,
)
from firstwords.edge.errors import ConfigError

LAPTOP = Path(__file__).resolve().parents[1] / "device_configs" / "laptop.toml"


def test_shipped_configs_load_and_are_realistic():
    names = {p.stem for p in shipped_configs()}
    assert {"laptop", "rpi4", "rpi5", "rpi-zero-2w"} <= names
    zero = load_device_config(resolve_device_config("rpi-zero-2w"))
    pi5 = load_device_config(resolve_device_config("rpi5"))
    assert zero.budget.ram_mb <= 256  # 512 MB board
    assert zero.model.input_size <= pi5.model.input_size
    assert pi5.model.quantization == "qdq_s8s8"  # A76 has int8 dot product
    for p in shipped_configs():
        cfg = load_device_config(p)
        assert cfg.model.quantization in QUANTIZATION_FORMATS
        assert cfg.path == p


def _write(tmp_path, text):
    p = tmp_path / "dev.toml"
    p.write_text(text)
    return p


def _edit(old, new):
    text = LAPTOP.read_text()
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize("old,new,pattern", [
    ("threads = 2", "threads = 2\nthreds = 3", r"unknown key \[model\] threds; allowed keys in \[model\]: input_size"),
    ("threads = 2", "", r"missing key \[model\] threads"),
    ("threads = 2", 'threads = "two"', r"\[model\] threads must be an integer, got str"),
    ("threads = 2", "threads = true", r"\[model\] threads must be an integer, got bool"),
    ("threads = 2", "threads = 0", r"\[model\] threads must be greater than 0"),
    ('quantization = "qdq_u8s8"', 'quantization = "int4"',
     r"\[model\] quantization = 'int4' is not allowed; use one of: none, dynamic, qdq_s8s8, qdq_u8s8"),
    ('name = "laptop"', 'name = "laptop"\ncolour = "red"', r"unknown key 'colour'"),
    ("threads = 2", "threads = = 2", r"not valid TOML"),
    ("threads = 2", "threads = 100000", r"\[model\] threads = 100000 is too large; at most \d+ here"),
    ("input_size = 160", "input_size = 1000000", r"\[model\] input_size = 1000000 is too large"),
])
def test_config_errors_name_file_key_and_allowed(tmp_path, old, new, pattern):
    p = _write(tmp_path, _edit(old, new))
    with pytest.raises(ConfigError) as e:
        load_device_config(p)
    msg = str(e.value)
    assert str(p) in msg
    assert re.search(pattern, msg), msg


def test_float_field_accepts_integer_and_missing_file_lists_shipped(tmp_path):
    cfg = load_device_config(_write(tmp_path, _edit("fps = 5.0", "fps = 5")))
    assert cfg.camera.fps == 5.0 and isinstance(cfg.camera.fps, float)
    with pytest.raises(ConfigError, match=r"no such device config.*rpi4.toml"):
        load_device_config(tmp_path / "nope.toml")


def test_threads_are_bounded_by_the_cores_but_any_shipped_config_loads(tmp_path):
    import os

    from firstwords.edge.config import max_threads

    cores = os.cpu_count() or 1
    assert max_threads() == max(16, 4 * cores)
    ok = load_device_config(_write(tmp_path, _edit("threads = 2", f"threads = {max_threads()}")))
    assert ok.model.threads == max_threads()
    with pytest.raises(ConfigError, match=rf"threads = {max_threads() + 1} is too large.*use {cores} or fewer"):
        load_device_config(_write(tmp_path, _edit("threads = 2", f"threads = {max_threads() + 1}")))
