"""Categorical codes of store format 1.1 (pipeline.publishing.codes) and their manifest digests."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from numpy.dtypes import StringDType

from models.data import SPLIT_CODES
from pipeline.checksums import array_digest
from pipeline.errors import InputError
from pipeline.publishing.codes import (
    category_attrs,
    cf_word,
    check_coded,
    code_dtype,
    coded,
    coded_format,
    is_text,
    strings,
)
from pipeline.publishing.contract import SEISMIC_CODED
from pipeline.publishing.manifest import variable_digest


def test_codes_keep_known_categories_and_append_new_names_in_order_of_appearance() -> None:
    codes, attrs = coded(["b", "z", "a", "b"], ["z", "q"])
    assert attrs["categories"] == ["z", "q", "b", "a"]
    assert codes.tolist() == [2, 0, 3, 2] and codes.dtype == np.int8
    assert attrs["flag_values"] == [0, 1, 2, 3] and attrs["flag_meanings"] == "z q b a"
    again, attrs2 = coded(["c", "a"], attrs["categories"], np.int16)  # an append: old codes keep meaning
    assert attrs2["categories"][:4] == attrs["categories"] and again.tolist() == [4, 3]
    assert again.dtype == np.int16


def test_codes_do_not_depend_on_how_values_are_batched() -> None:
    values = ["S3", "S1", "S3", "S2", "S1", "S4"]
    whole, attrs = coded(values)
    first, part = coded(values[:3])
    second, parts = coded(values[3:], part["categories"])
    assert parts == attrs and np.concatenate([first, second]).tolist() == whole.tolist()


def test_smallest_code_dtype_and_overflow_is_refused() -> None:
    assert [code_dtype(n) for n in (0, 128, 129, 32768, 32769)] == [
        np.int8, np.int8, np.int16, np.int16, np.int32,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="do not fit int8"):
        coded([str(i) for i in range(129)], (), np.int8)


def test_cf_words_have_no_spaces_and_exact_names_stay_in_categories() -> None:
    assert cf_word("asphalt road") == "asphalt_road"
    assert cf_word("") == "_"
    assert cf_word("métal/sheet #2") == "m_tal_sheet__2"
    attrs = category_attrs(["asphalt road", "", "HHZ,HHN,HHE"])
    assert attrs["flag_meanings"].split() == ["asphalt_road", "_", "HHZ_HHN_HHE"]
    assert attrs["categories"] == ["asphalt road", "", "HHZ,HHN,HHE"]


def test_strings_decodes_both_format_versions() -> None:
    codes, attrs = coded(["val", "train", "test"], SEISMIC_CODED["split"][0])
    new = xr.Dataset(coords={"split": ("trace", codes, attrs), "label": ("trace", np.array([1, 0, 1]))})
    old = xr.Dataset(
        coords={
            "split": ("trace", np.array(["val", "train", "test"], dtype=StringDType())),
            "label": ("trace", np.array([1, 0, 1])),
            "label_name": ("trace", np.array(["b", "a", "b"], dtype=StringDType())),
        }
    )
    for ds in (new, old):
        got = strings(ds, "split")
        assert got.dtype.kind == "U" and got.tolist() == ["val", "train", "test"]
        assert is_text(ds["split"])
    assert strings(old, "label").tolist() == ["b", "a", "b"]  # 1.0: the names lived in label_name
    assert not is_text(new["label"])
    with pytest.raises(InputError, match="'label'"):
        strings(new, "label")  # integers without categories are not text


def test_codes_outside_their_categories_are_an_error_and_a_contract_problem() -> None:
    var = xr.DataArray(np.array([0, 3], np.int8), dims="trace", attrs=category_attrs(["a", "b"]))
    with pytest.raises(InputError, match=r"outside 0\.\.1"):
        strings(xr.Dataset(coords={"c": var}), "c")
    assert any("outside" in p for p in check_coded(var, "c"))
    bad = var.copy(data=np.array([0, 1], np.int8))
    bad.attrs["flag_meanings"] = "b a"
    assert any("disagree" in p for p in check_coded(bad, "c"))
    assert any("differ" in p for p in check_coded(var.copy(data=np.array([0, 1], np.int8)), "c", ["b", "a"]))
    assert check_coded(var.copy(data=np.array([0, 1], np.int8)), "c", ["a", "b"]) == []


def test_format_versions_and_split_codes_agree() -> None:
    assert not coded_format("1.0") and coded_format("1.1") and not coded_format("9.9")
    assert tuple(SPLIT_CODES) == SEISMIC_CODED["split"][0]  # stored split codes are the trainers' codes
    assert list(SPLIT_CODES.values()) == [0, 1, 2]


def test_digest_of_a_coded_column_covers_its_meaning_and_strings_digest_as_before() -> None:
    codes, attrs = coded(["3C", "1C"], ["3C", "1C"])
    var = xr.Variable(("trace",), codes, attrs)
    swapped = xr.Variable(("trace",), codes, category_attrs(["1C", "3C"]))
    assert variable_digest(var) != variable_digest(swapped)  # relabelling a code changes the content
    text = xr.Variable(("trace",), np.array(["x", "yy"], dtype=StringDType()))
    # a column without categories (every 1.0 column) digests exactly as the 1.0 manifests recorded
    assert variable_digest(text) == "sha256:" + array_digest(np.array(["x", "yy"], dtype=object))
