"""Property tests: whatever bytes a CSV file or a YAML config holds, trainwise either loads it or raises a
TrainwiseError (exit 2 with a HINT) — never an internal error, and a table it loads is finite, ready for a model."""
from __future__ import annotations

import csv
import io
import math
import tempfile
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainwise import TrainwiseError
from trainwise.config import RunConfig, load_config
from trainwise.data import load_source, prepare

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MARKERS = ["", "?", "NA", "N/A", "nan", "None", "null", "-", "abc", "inf", "-inf", "1e400", "1e-400", "TRUE", "x y", ",", '"']


def _load(text: bytes | str, target: str = "t", **options):
    """Load ``text`` as a CSV file and prepare it; None when it was refused with a TrainwiseError."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "data.csv"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        try:
            raw = load_source(str(path), target=target, **options)
            prep = prepare(raw, impute=options.get("missing") == "median")
        except TrainwiseError as e:
            assert e.hint, e  # every refusal says what to do
            return None
    for X, y in prep.arrays.values():
        assert np.isfinite(X).all() and (y.dtype.kind not in "fc" or np.isfinite(y).all())
    return prep


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes_never_cause_an_internal_error(data):
    _load(data)
    _load(b"a,b,t\n" + data)


finite = st.one_of(st.floats(-1e6, 1e6), st.integers(-1000, 1000), st.floats(allow_nan=False, allow_infinity=False, width=32))
extreme = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.integers(-10**30, 10**30),
                    st.sampled_from([1e-320, 5e-324, 1.7e308, 3.5e38, 3.4e38, -1e39, 1e-45, 0.0, -0.0]))
numbers = st.one_of(finite, finite, finite, extreme)
cells = st.one_of(numbers.map(repr), numbers.map(str), st.sampled_from(MARKERS), st.text(max_size=6))


@st.composite
def tables(draw):
    """A CSV with a target column t and 1-3 features: numbers (huge, tiny, inf, nan), missing markers, words."""
    n_rows, n_cols = draw(st.one_of(st.integers(0, 10), st.integers(20, 60))), draw(st.integers(1, 3))
    columns = [f"f{i}" for i in range(n_cols)] + ["t"]
    kind = draw(st.sampled_from(["numbers", "mostly numbers", "anything"]))
    cell = {"numbers": numbers.map(repr), "mostly numbers": st.one_of(numbers.map(repr), numbers.map(repr), cells),
            "anything": cells}[kind]
    target = st.one_of(st.sampled_from(["a", "b"]), st.sampled_from(["a", "b"]), st.integers(0, 2).map(str), cell)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for _ in range(n_rows):
        writer.writerow([draw(cell) for _ in range(n_cols)] + [draw(target)])
    return out.getvalue()


@SETTINGS
@given(tables(), st.sampled_from(["error", "drop", "median"]))
def test_tables_with_mixed_and_extreme_values_load_or_are_refused(text, missing):
    _load(text, missing=missing)


@SETTINGS
@given(st.lists(st.floats(min_value=-3e38, max_value=3e38, allow_nan=False), min_size=30, max_size=60),
       st.sampled_from([1e-300, 1e-30, 1.0, 1e30, 1e37]))
def test_finite_numbers_at_any_scale_load_and_stay_finite(values, scale):
    rows = "\n".join(f"{v * scale if abs(v * scale) < 3e38 else v!r},{i % 2}" for i, v in enumerate(values))
    prep = _load(f"x,t\n{rows}\n")
    assert prep is not None and prep.task == "classification"


yaml_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                           max_leaves=8)
field_values = st.one_of(yaml_values, st.sampled_from(["auto", "none", "mlp:", "mlp:8", "linear", "cosine", "1,0,0", "0.7,0.3",
                                                       "inf", "nan", "-1", "0", "1e400", "digits", "x.csv", "flip,rotate=500"]))
configs = st.dictionaries(st.sampled_from([*RunConfig.model_fields, "learning_rate", "bogus"]), field_values, max_size=5)


@SETTINGS
@given(st.one_of(configs.map(lambda d: yaml.safe_dump(d)), yaml_values.map(lambda v: yaml.safe_dump(v)),
                 st.text(max_size=80), st.binary(max_size=80)))
def test_any_yaml_config_is_a_run_config_or_a_trainwise_error(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "config.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        try:
            cfg = load_config(path)
        except TrainwiseError as e:
            assert e.hint and "config file" in e.message
            return
    assert isinstance(cfg, RunConfig)
    floats = [v for v in cfg.model_dump().values() if isinstance(v, float)]
    assert all(math.isfinite(v) for v in floats)  # inf/nan are never accepted as a setting
    assert RunConfig.build(cfg.model_dump()) == cfg  # what a run saves reads back the same


@SETTINGS
@given(configs)
def test_any_option_values_are_a_run_config_or_a_trainwise_error(values):
    try:
        RunConfig.build(values, source="option")
    except TrainwiseError as e:
        assert e.hint
