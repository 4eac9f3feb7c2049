"""Every preset in configs/ loads the way its command reads it: model presets into a RunConfig
and their model's typed config (validated), pipeline and text-search presets into theirs. A
preset is what a README command hands a new user, so a broken one must fail here, not there
(one did: a comment line that lost its '#')."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from genrec.config import from_dict
from genrec.pipeline.ranking import load_pipeline_config
from genrec.pipeline.text_search.config import load_config
from genrec.registry import model_classes
from genrec.runs.config import make_config

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml"))


def test_there_are_presets_of_every_family():
    names = [p.stem for p in PRESETS]
    assert len(names) > 40
    assert any(n.startswith("pipeline_") for n in names)
    assert any(n.startswith("text2items_") for n in names)


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_loads_into_its_typed_config(path):
    data = tomllib.loads(path.read_text())  # plain TOML first: the error names the line
    if path.stem.startswith("pipeline_"):
        load_pipeline_config(path)
    elif path.stem.startswith("text2items_"):
        load_config(path).validate()
    else:
        cfg = make_config(preset=path)
        assert cfg.model == data["model"]
        _, config_cls = model_classes(cfg.model)
        params = from_dict(config_cls, dict(cfg.params))
        if hasattr(params, "validate"):
            params.validate()
