"""Categorical columns as integer codes (store format 1.1), and reading any text column of any version.

Format 1.1 stores every categorical column (few distinct values: a class, a split, a station, a
reject reason…) as signed integer codes carrying three attributes (docs/format.md):

``flag_values``
    ``[0, 1, …, K−1]`` (CF)
``flag_meanings``
    the K names as CF words, space-separated: every character outside CF's set (letters,
    digits, ``_ . + - @``) becomes ``_``, an empty name is ``_`` (CF; for display)
``categories``
    the K exact names in code order: what decoding uses

Codes never change meaning: a store that is appended to adds new names at the end, in order of
first appearance. Format 1.0
stored these columns as zarr v3 ``string`` arrays, which only zarr-python reads; unique ids and
free text stay ``string`` in 1.1. :func:`strings` reads a column of either version as text.

numpy and :mod:`pipeline.errors` only: :mod:`models.data` decodes with it too (docs/architecture.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import DTypeLike

from pipeline.errors import InputError

if TYPE_CHECKING:
    import xarray as xr

#: Every store format version the readers accept, oldest first; writers write the last.
FORMAT_VERSIONS = ("1.0", "1.1")
#: The first version whose categorical columns are codes.
CODED_SINCE = "1.1"
#: Coded 1.1 columns whose names a 1.0 store kept in another (string) column.
FORMAT_1_0_NAMES = {"label": "label_name"}


def coded_format(version: object) -> bool:
    """Whether a store of format ``version`` (one of :data:`FORMAT_VERSIONS`) holds coded columns."""
    return version in FORMAT_VERSIONS and FORMAT_VERSIONS.index(str(version)) >= FORMAT_VERSIONS.index(
        CODED_SINCE
    )


_NOT_CF = re.compile(r"[^A-Za-z0-9_.+\-@]")


def code_dtype(n_categories: int) -> np.dtype[Any]:
    """The smallest signed integer dtype whose non-negative values hold ``n_categories`` codes."""
    for dtype in (np.int8, np.int16, np.int32):
        if n_categories <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def cf_word(name: str) -> str:
    """``name`` as a CF ``flag_meanings`` word (characters outside CF's set → ``_``; empty → ``_``)."""
    return _NOT_CF.sub("_", name) or "_"


def category_attrs(categories: Sequence[str]) -> dict[str, Any]:
    """The attributes of a coded column whose code ``i`` means ``categories[i]``."""
    names = [str(c) for c in categories]
    return {
        "flag_values": list(range(len(names))),
        "flag_meanings": " ".join(cf_word(c) for c in names),
        "categories": names,
    }


def coded(
    values: Iterable[object], categories: Sequence[str] = (), dtype: DTypeLike | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Codes of ``values`` and the column's attributes (:func:`encode`, then :func:`category_attrs`)."""
    codes, cats = encode(values, categories, dtype)
    return codes, category_attrs(cats)


def encode(
    values: Iterable[object], categories: Sequence[str] = (), dtype: DTypeLike | None = None
) -> tuple[np.ndarray, list[str]]:
    """Codes of ``values`` and the column's categories: ``categories`` keep their codes, new names
    are appended in order of first appearance, so a column that is appended to never changes an
    old code's meaning, and the same values in the same order give the same codes however they
    are split into batches. No attributes: a writer that encodes batch after batch makes them
    once, at the end (:func:`category_attrs` costs a regex per category).

    ``dtype`` defaults to the smallest that fits; a column that is appended to passes its own
    (ValueError when the names outgrow it).
    """
    arr = np.asarray(values if hasattr(values, "__array__") else list(values), dtype=object)
    text = arr.astype(str).ravel() if arr.size else np.zeros(0, dtype=str)
    uniq, first, inverse = np.unique(text, return_index=True, return_inverse=True)  # vectorised
    known = [str(c) for c in categories]
    seen = set(known)
    cats = [*known, *(u for u in uniq[np.argsort(first)].tolist() if u not in seen)]
    dtype = code_dtype(len(cats)) if dtype is None else np.dtype(dtype)
    if len(cats) > np.iinfo(dtype).max + 1:
        raise ValueError(f"{len(cats)} categories do not fit {dtype} codes")
    index = {c: i for i, c in enumerate(cats)}
    lookup = np.array([index[u] for u in uniq.tolist()], dtype=np.int64)
    return lookup[inverse].astype(dtype), cats


def categories_of(attrs: Mapping[str, Any]) -> list[str] | None:
    """The exact names of a coded column (its ``categories`` attribute); None for a column without."""
    cats = attrs.get("categories")
    return None if cats is None else [str(c) for c in cats]


def is_text(var: xr.DataArray | xr.Variable) -> bool:
    """Whether a column reads as text with :func:`strings`: a string array, or codes with categories."""
    return var.dtype.kind in "OUT" or (var.dtype.kind == "i" and categories_of(var.attrs) is not None)


def as_str(values: object) -> np.ndarray:
    """Any string array (numpy U, StringDType as zarr v3 returns, object) as a numpy U array."""
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype="<U1")
    return np.array([str(v) for v in arr.ravel().tolist()], dtype=str).reshape(arr.shape)


def strings(ds: xr.Dataset, name: str) -> np.ndarray:
    """Column ``name`` of a store as text (numpy U), whatever its format version.

    A coded column (1.1) is decoded through its ``categories``; a string column (1.0, or a 1.1
    id/free-text column) is read as it is; a 1.0 store's names of a coded column kept elsewhere
    (:data:`FORMAT_1_0_NAMES`: HSI ``label`` → ``label_name``) are read from there.
    """
    var = ds[name]
    if var.dtype.kind in "OUT":
        return as_str(var.values)
    cats = categories_of(var.attrs)
    if cats is None and FORMAT_1_0_NAMES.get(name) in ds.variables:
        return as_str(ds[FORMAT_1_0_NAMES[name]].values)
    if cats is None or var.dtype.kind != "i":
        raise InputError(
            f"column {name!r} ({var.dtype}) is neither text nor integer codes with a 'categories' attribute",
            fix="read a text or categorical column (docs/format.md lists them), or re-curate the store",
        )
    codes = np.asarray(var.values)
    if codes.size and (codes.min() < 0 or codes.max() >= len(cats)):
        raise InputError(
            f"column {name!r} holds codes outside 0..{len(cats) - 1} (its categories)",
            fix="the store is damaged: re-run the curation, or open another published version",
        )
    return np.asarray(cats, dtype=str)[codes] if cats else np.zeros(codes.shape, dtype="<U1")


def check_coded(
    var: xr.DataArray | xr.Variable, name: str, categories: Sequence[str] | None = None
) -> list[str]:
    """Contract problems of a 1.1 coded column (``categories``: the names it must have, in order)."""
    cats = categories_of(var.attrs)
    if var.dtype.kind != "i" or cats is None:
        return [f"{name!r} must be integer codes with a 'categories' attribute, got {var.dtype}"]
    problems = []
    expected = category_attrs(cats)
    flags = [int(v) for v in np.atleast_1d(var.attrs.get("flag_values", []))]
    if flags != expected["flag_values"] or var.attrs.get("flag_meanings") != expected["flag_meanings"]:
        problems.append(f"{name!r}: flag_values/flag_meanings disagree with its categories")
    if len(set(cats)) != len(cats):
        problems.append(f"{name!r}: categories are not unique")
    if categories is not None and cats != [str(c) for c in categories]:
        problems.append(f"{name!r}: categories {cats} differ from {list(categories)}")
    codes = np.asarray(var.values)
    if codes.size and (codes.min() < 0 or codes.max() >= len(cats)):
        problems.append(f"{name!r}: codes outside 0..{len(cats) - 1}")
    return problems
