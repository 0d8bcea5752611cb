"""A case's ``cotangent`` distribution (methods defined by their backward pass need zero, huge
and tiny cotangents): drawn in the generator's order, scaled per dtype, recorded in the
manifest; a standard normal cotangent otherwise, so that existing vectors do not change."""

from __future__ import annotations

import numpy as np
import pytest
from normspec.conformance.vectors.catalog import parse_catalog
from normspec.conformance.vectors.generate import build_method, draw_case

HEAD = 'method = "layer_norm"\ndescription = "t"\n'
CASE = '[[case]]\nname = "c"\nseed = 3\nshape = [2, 5]\nhyper = { axis = -1, eps = 1e-5 }\n'


def test_a_case_without_cotangent_draws_the_standard_normal() -> None:
    case = parse_catalog(HEAD + CASE, "t.toml").cases[0]
    assert case.cotangent is None
    drawn = draw_case(case)
    assert isinstance(drawn.cotangent, np.ndarray)
    assert drawn.cotangent.shape == (2, 5)
    assert "cotangent" not in build_method(parse_catalog(HEAD + CASE, "t.toml"),
                                           ("float64",)).entry["cases"][0]


@pytest.mark.parametrize(("dist", "check"), [
    ('{ dist = "constant", value = 0.0 }', lambda g, dtype: not g.any()),
    ('{ dist = "huge" }', lambda g, dtype: np.abs(g).max() > (100 if dtype == "float16" else 1e10)),
])
def test_the_cotangent_distribution_is_drawn_and_recorded(dist: str, check) -> None:
    catalog = parse_catalog(HEAD + CASE + f"cotangent = {dist}\n", "t.toml")
    built = build_method(catalog, ("float64", "float16"))
    assert built.entry["cases"][0]["cotangent"]["dist"] == dist.split('"')[1]
    from normspec.conformance.vectors.storage import decode

    for dtype in ("float64", "float16"):
        tensors = decode(built.files[f"layer_norm/{dtype}.safetensors"], dtype)
        assert check(tensors["c/cotangent"].astype(np.float64), dtype)


def test_a_trajectory_has_no_cotangent() -> None:
    text = HEAD.replace("layer_norm", "batch_norm") + (
        '[[case]]\nname = "t"\nseed = 1\nshape = [6, 3, 4]\n'
        'cotangent = { dist = "constant", value = 0.0 }\n'
        'hyper = { eps = 1e-5, batch_stat_weight = 0.1, running_var_estimator = "biased" }\n'
        'state = ["running_mean", "running_var"]\nstep = [{}, {}]\n')
    with pytest.raises(ValueError, match="a trajectory has no cotangent"):
        parse_catalog(text, "t.toml")


def test_a_literal_cotangent_is_rejected() -> None:
    with pytest.raises(ValueError, match="expected a float distribution"):
        parse_catalog(HEAD + CASE + 'cotangent = { dist = "values", values = [1, 2] }\n',
                      "t.toml")
