from dataclasses import dataclass, field

import pytest

from genrec.config import ConfigError, apply_overrides, from_dict, to_dict, to_toml
from genrec.config import from_layers, load_toml, merge


@dataclass
class Inner:
    lr: float = 1e-3
    ks: tuple[int, ...] = (10, 20)


@dataclass
class Outer:
    name: str = "x"
    layers: int = 2
    dropout: float | None = None
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def test_round_trip_through_toml(tmp_path):
    cfg = from_dict(Outer, apply_overrides({}, ["layers=4", "inner.lr=3e-4", "inner.ks=[5, 50]", "flag=true"]))
    assert cfg == Outer(layers=4, flag=True, inner=Inner(lr=3e-4, ks=(5, 50)))
    path = tmp_path / "c.toml"
    path.write_text(to_toml(to_dict(cfg)))
    assert from_dict(Outer, load_toml(path)) == cfg


def test_unknown_key_is_named_with_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) inner.lrr .*known: ks, lr"):
        from_dict(Outer, {"inner": {"lrr": 1.0}})


@pytest.mark.parametrize("key,value", [("layers", "two"), ("layers", 2.5), ("flag", "maybe"),
                                       ("inner", 3), ("name", True)])
def test_wrong_types_fail(key, value):
    with pytest.raises(ConfigError, match=key):
        from_dict(Outer, {key: value})


def test_optional_and_bare_word_overrides():
    cfg = from_dict(Outer, apply_overrides({}, ["dropout=0.2", "name=ml-100k"]))
    assert cfg.dropout == 0.2 and cfg.name == "ml-100k"
    assert from_dict(Outer, {"dropout": None}).dropout is None


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["layers"])


def test_merge_layers_tables_key_by_key_and_changes_neither_input():
    base = {"name": "a", "dropout": None, "inner": {"lr": 1.0, "ks": [1]}}
    over = {"inner": {"lr": 2.0}, "layers": 3}
    assert merge(base, over) == {"name": "a", "inner": {"lr": 2.0, "ks": [1]}, "layers": 3}
    assert base == {"name": "a", "dropout": None, "inner": {"lr": 1.0, "ks": [1]}}
    assert over == {"inner": {"lr": 2.0}, "layers": 3}
    assert merge({"inner": 5}, {"inner": {"lr": 1}}) == {"inner": {"lr": 1}}  # over wins


def test_from_layers_defaults_then_preset_then_sets():
    defaults = {"layers": 8, "inner": {"lr": 0.5, "ks": [1, 2]}}
    cfg = from_layers(Outer, {"inner": {"ks": [3]}}, ["inner.lr=0.25"], defaults=defaults)
    assert cfg == Outer(layers=8, inner=Inner(lr=0.25, ks=(3,)))
    assert from_layers(Outer, {}, ["name=y"]) == Outer(name="y")
