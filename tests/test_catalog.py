"""The case catalogs (spec/cases/*.toml): validation errors and the coverage each must have."""

from __future__ import annotations

import inspect
import itertools
import math
from pathlib import Path

import pytest
from normspec.conformance.vectors.catalog import (
    CaseSpec,
    catalog_methods,
    load_catalog,
    parse_catalog,
)
from normspec.reference import METHODS, get

SOURCE = "spec/cases/test.toml"
LAYER_NORM_CASE = """
method = "layer_norm"

[[case]]
name = "a"
seed = 1
shape = [2, 3]
hyper = { axis = -1, eps = 1e-5 }
"""


def _with(extra: str, method: str = "layer_norm") -> str:
    """A one-case catalog with ``extra`` lines added to its case."""
    return LAYER_NORM_CASE.replace('method = "layer_norm"', f'method = "{method}"') + extra


# --- validation ----------------------------------------------------------------------------


def test_minimal_catalog_parses_with_defaults() -> None:
    catalog = parse_catalog(LAYER_NORM_CASE, SOURCE)
    (case,) = catalog.cases
    assert case.present == ("x", "weight", "bias")
    assert case.shapes == {"x": (2, 3), "weight": (3,), "bias": (3,)}
    assert case.dists["x"].kind == "normal"
    assert case.dtypes == ("float64", "float32", "float16", "bfloat16")


def test_duplicate_case_names_are_rejected() -> None:
    text = LAYER_NORM_CASE + LAYER_NORM_CASE.split('method = "layer_norm"')[1].replace(
        "seed = 1", "seed = 2")
    with pytest.raises(ValueError, match=r"spec/cases/test\.toml: duplicate case name 'a'"):
        parse_catalog(text, SOURCE)


def test_unknown_method_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"spec/cases/test\.toml: 'method': got 'foo_norm', "
                                         r"expected one of \['batch_norm'"):
        parse_catalog(LAYER_NORM_CASE.replace("layer_norm", "foo_norm"), SOURCE)


def test_method_must_match_file_name() -> None:
    with pytest.raises(ValueError, match=r"got 'layer_norm', expected 'rms_norm' \(the file"):
        parse_catalog(LAYER_NORM_CASE, SOURCE, method="rms_norm")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param('dtypes = ["float8"]', r"'dtypes': got \['float8'\], expected distinct "
                     r"names from \['float64', 'float32', 'float16', 'bfloat16'\]", id="dtype"),
        pytest.param('inputs = { x = "gaussian" }', r"case 'a': inputs\.x: unknown distribution "
                     r"'gaussian', expected one of \['normal'", id="distribution"),
        pytest.param('inputs = { x = { dist = "normal", sigma = 2.0 } }',
                     r"distribution 'normal' has no parameter 'sigma'", id="dist-parameter"),
        pytest.param('inputs = { x = { dist = "offset", ratio = 10.0 } }',
                     r"expected \|ratio\| >= 1000", id="offset-too-small"),
        pytest.param('inputs = { x = { dist = "offset" } }',
                     r"distribution 'offset' needs parameter\(s\) \['ratio'\]", id="offset-ratio"),
        pytest.param('primals = ["x"]\ninputs = { bias = "normal" }',
                     r"'inputs' names \['bias'\], which the case does not pass", id="absent-input"),
        pytest.param('primals = ["weight"]', r"expected a list with 'x'", id="no-x"),
        pytest.param('primals = ["x", "gamma"]', r"'primals': got \['x', 'gamma'\]", id="primal"),
        pytest.param('state = ["running_mean"]', r"'state': got \['running_mean'\], expected "
                     r"distinct names from \[\]", id="state-on-layer_norm"),
        pytest.param("colour = 1", r"unknown key\(s\) \['colour'\]", id="case-key"),
        pytest.param("expect_nonfinite = 1", r"'expect_nonfinite' must be a boolean",
                     id="nonfinite-flag"),
    ],
)
def test_bad_case_fields_are_rejected(extra: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_catalog(_with(extra), SOURCE)
    assert str(info.value).startswith(SOURCE)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        pytest.param("axis = -1, ", "axs = -1, ", r"unknown hyperparameter\(s\) \['axs'\] for "
                     r"layer_norm, expected names from \['axis', 'eps'\]", id="unknown-hyper"),
        pytest.param("axis = -1, ", "", r"missing required hyperparameter\(s\) \['axis'\]",
                     id="missing-hyper"),
        pytest.param("eps = 1e-5", "eps = nan", r"hyperparameter 'eps': got nan, expected",
                     id="nan-hyper"),
        pytest.param("axis = -1", "axis = 5", r"hyperparameter 'axis': got 5, expected an axis "
                     r"of a 2-d input", id="axis-range"),
        pytest.param('name = "a"', 'name = "a/b"', r"case #0: 'name': got 'a/b'", id="name"),
        pytest.param("seed = 1", "seed = -1", r"'seed': got -1, expected an integer",
                     id="seed"),
        pytest.param("shape = [2, 3]", "shape = [2, 0]", r"'shape': got \[2, 0\], expected a "
                     "non-empty list of positive integers", id="shape"),
        pytest.param("shape = [2, 3]", "shape = [300, 300]", r"expected at most 65536 elements",
                     id="too-large"),
    ],
)
def test_bad_case_values_are_rejected(old: str, new: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_catalog(LAYER_NORM_CASE.replace(old, new), SOURCE)


def test_invalid_toml_names_the_file() -> None:
    with pytest.raises(ValueError, match=r"^spec/cases/test\.toml: invalid TOML"):
        parse_catalog("[[case]\n", SOURCE)


def test_a_stray_catalog_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "layer_norm.toml").write_text(LAYER_NORM_CASE)
    (tmp_path / "no_such_norm.toml").write_text(LAYER_NORM_CASE)
    with pytest.raises(ValueError, match=r"\['no_such_norm\.toml'\] name no method"):
        catalog_methods(tmp_path)


def test_load_catalog_rejects_unknown_method() -> None:
    with pytest.raises(ValueError, match=r"argument 'method': got 'foo_norm'"):
        load_catalog("foo_norm")


def test_every_method_has_a_catalog() -> None:
    assert catalog_methods() == METHODS


# --- coverage ------------------------------------------------------------------------------
# Reduction sizes are computed here from each method's definition (not from the generator),
# so a catalog edit that loses a required size fails this test.


def _axis(case: CaseSpec, name: str, default: int | None = None) -> int:
    value = case.hyper.get(name, default)
    assert isinstance(value, int)
    return value % len(case.shape)


def reduction_size(case: CaseSpec) -> int | None:
    """Values per statistic (None: the case has no reduction, e.g. batch_norm evaluation)."""
    shape, method = case.shape, case.method
    if method == "qk_norm":  # a head's Dh values, or a token's H * Dh
        h = shape[1] if case.hyper["layout"] == "bhtd" else shape[2]
        return shape[-1] if case.hyper["norm_axes"] == "head" else h * shape[-1]
    if method == "gradnorm":  # one value per task: nothing is reduced over x's axes
        return None
    if method == "gradient_normalization":  # the gradient's norm spans the axes
        return math.prod(shape[int(a) % len(shape)]
                         for a in str(case.hyper["axis"]).split(","))
    if method in ("standardize", "min_max_scale"):  # fits reduce their axis list
        if case.hyper.get("training") is not True:
            return None
        return math.prod(shape[int(a) % len(shape)] for a in str(case.hyper["axis"]).split(","))
    if method in ("layer_norm", "rms_norm", "power_norm"):
        return math.prod(shape[_axis(case, "axis"):])
    if method in ("adaptive_layer_norm", "scale_norm"):  # over the last axis
        return shape[-1]
    if method in ("lp_norm", "fix_norm", "unit_norm"):
        return shape[_axis(case, "axis")]
    if method == "weight_standardization":  # every axis but the output channel
        return math.prod(shape) // shape[_axis(case, "kept_axis")]
    if method == "spectral_norm":  # sigma of the whole weight
        return math.prod(shape)
    if method == "weight_norm":  # every axis but the kept one (all for "none")
        k = case.hyper["kept_axis"]
        return math.prod(shape) // (1 if k == "none" else shape[int(k) % len(shape)])
    if method == "local_response_norm":
        size = case.hyper["size"]
        assert isinstance(size, int)
        return size
    c = _axis(case, "channel_axis", 1)
    if method == "mixed_eval_batch_norm" or (method == "batch_instance_norm"
                                             and case.hyper["training"] is True):
        return math.prod(s for i, s in enumerate(shape) if i != c)  # batch statistics
    if method in ("batch_norm", "batch_renorm", "sync_batch_norm"):
        return math.prod(s for i, s in enumerate(shape) if i != c) if case.hyper[
            "training"] else None
    spatial = math.prod(s for i, s in enumerate(shape) if i not in (0, c))
    if method in ("adaptive_instance_norm", "conditional_instance_norm"):  # per instance
        return spatial
    if method in ("instance_norm", "batch_instance_norm", "global_response_norm"):
        # BIN in evaluation: instances; GRN: one spatial norm per (sample, channel)
        return spatial
    if method == "ghost_batch_norm":  # one ghost batch: ghost_batch_size samples, all of space
        size = case.hyper["ghost_batch_size"]
        assert isinstance(size, int)
        return size * spatial if case.hyper.get("training") else None
    groups = case.hyper["groups"]
    assert isinstance(groups, int)
    return shape[c] // groups * spatial


def _has_channels(method: str) -> bool:
    return "channel_axis" in inspect.signature(get(method).forward).parameters


def _requirements() -> list[tuple[str, str]]:
    out = []
    for method in METHODS:
        if method == "gradnorm":  # per-task scalars >= 0, no tensor: its coverage rows instead
            out += [(method, r) for r in ("uniform", "values")]
            continue
        reqs = ["batch=1", "n=1", "n=7", "n=13", "n>1000", "normal", "offset", "tiny", "huge",
                "constant", "nan", "inf", "every-primal-subset"]
        if _has_channels(method):
            reqs.append("channels-last")
        if method == "batch_norm":
            reqs += ["training", "evaluation", "cumulative", "unbiased", "biased"]
        out += [(method, r) for r in reqs]
    return out


def _valid_counts(case: CaseSpec) -> set[int]:
    """sequence_batch_norm: valid frames per statistic, from the catalog's prefix mask."""
    lengths = case.dists["mask"].get("lengths")
    if case.hyper.get("statistics") == "sequence":
        return {sum(lengths)}
    return {sum(1 for length in lengths if length > t) for t in range(case.shapes["mask"][1])}


def _meets(case: CaseSpec, requirement: str) -> bool:
    if case.method == "sequence_batch_norm":  # its statistics count valid frames
        counts = _valid_counts(case)
        n = max(counts) if requirement == "n>1000" else (
            int(requirement[2:]) if requirement.startswith("n=") and int(requirement[2:]) in
            counts else None)
    else:
        n = reduction_size(case)
    if requirement == "batch=1":
        return case.shape[0] == 1
    if requirement == "n>1000":
        return n is not None and n > 1000
    if requirement.startswith("n="):
        return n == int(requirement[2:])
    if requirement == "channels-last":
        return len(case.shape) >= 3 and _axis(case, "channel_axis", 1) == len(case.shape) - 1
    if requirement == "training":
        return case.hyper["training"] is True
    if requirement == "evaluation":
        return case.hyper["training"] is False
    if requirement == "cumulative":
        return case.hyper.get("batch_stat_weight") == "cumulative"
    if requirement in ("unbiased", "biased"):
        return case.hyper.get("running_var_estimator") == requirement and bool(case.state)
    if case.method == "gradient_normalization" and case.cotangent is not None:
        # defined by its backward pass: the cotangent carries the distribution
        return requirement in (case.cotangent.kind, case.dists["x"].kind)
    return case.dists["x"].kind == requirement


@pytest.mark.parametrize(("method", "requirement"), _requirements(),
                         ids=[f"{m}-{r}" for m, r in _requirements()])
def test_catalog_covers(method: str, requirement: str) -> None:
    cases = load_catalog(method).cases
    if requirement == "every-primal-subset":
        params = inspect.signature(get(method).forward).parameters
        # a primal without a default (batch_instance_norm's rho) is in every case
        optional = [p for p in get(method).PRIMALS[1:]
                    if params[p].default is not inspect.Parameter.empty]
        wanted = {frozenset(s) for k in range(len(optional) + 1)
                  for s in itertools.combinations(optional, k)}
        seen = {frozenset(c.present) & set(optional) for c in cases}
        assert wanted <= seen, f"missing primal variants {sorted(map(sorted, wanted - seen))}"
        return
    assert any(_meets(c, requirement) for c in cases), (
        f"spec/cases/{method}.toml has no case meeting {requirement!r}")


def test_large_offset_ratio_is_at_least_1e3_everywhere() -> None:
    for method in METHODS:
        for case in load_catalog(method).cases:
            if case.dists["x"].kind == "offset":
                assert abs(case.dists["x"].get("ratio")) >= 1e3, (method, case.name)
