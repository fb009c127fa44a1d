"""Turn a request body into a validated raw batch, or an :class:`ApiError` (4xx).

Three encodings: JSON ``{"inputs": nested lists}``, JSON ``{"inputs_npy": base64 .npy}`` and
PNG/JPEG images (multipart ``image`` files, or a raw ``image/png``/``image/jpeg`` body).
JSON rows of a table model hold strings in its text columns and ``null`` where it imputes
missing values (:func:`typed_rows`); every other model takes numbers only (the fast path).
A table row may also be an object keyed by the model's column names (when its metadata has them).
Everything here is synchronous and CPU-bound; the server calls it in a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["ApiError", "InputSpec", "PredictRequest", "decode_json", "decode_images", "check_batch", "typed_rows"]

# an image larger than this many pixels is refused before it is decoded (decompression bombs)
MAX_IMAGE_PIXELS = 4096 * 4096
_IMAGE_FORMATS = ("PNG", "JPEG")
# image channels -> PIL mode
_MODES = {1: "L", 3: "RGB"}


class ApiError(Exception):
    """An HTTP error answer: status, a short machine ``code`` and a one-line ``detail``."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = headers or {}


class PredictRequest(BaseModel):
    """``POST /v1/predict`` JSON body: exactly one of ``inputs`` or ``inputs_npy``."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] | None = Field(
        None, description="raw samples as nested lists, shape (N, *raw_shape), or one sample")
    inputs_npy: str | None = Field(
        None, description="base64 of a .npy file (no pickled objects) holding (N, *raw_shape)")

    @model_validator(mode="after")
    def _exactly_one(self) -> "PredictRequest":
        if (self.inputs is None) == (self.inputs_npy is None):
            raise ValueError("give exactly one of 'inputs' or 'inputs_npy'")
        return self


class PredictResponse(BaseModel):
    """Class ids + probabilities (classification) or values (regression)."""

    predictions: list[int] | list[float]
    probabilities: list[list[float]] | None = None
    labels: list[str] | None = None


@dataclass(frozen=True)
class InputSpec:
    """What a valid raw batch looks like for the served model. ``categories`` ({column: training
    values}) are the text columns of a table model; ``missing`` True when its preprocessing
    imputes missing values (JSON ``null``, NaN in ``.npy``); ``columns`` names the columns."""

    raw_shape: tuple[int, ...]
    max_batch: int
    categories: Mapping[int, Sequence[str]] = field(default_factory=dict)
    missing: bool = False
    columns: Sequence[str] = ()

    @property
    def takes_images(self) -> bool:
        return len(self.raw_shape) == 3 and self.raw_shape[0] in _MODES

    def column(self, c: int) -> str:
        """Column ``c`` for an error line: its index, and its training name when known."""
        return f"{c} ({self.columns[c]!r})" if c < len(self.columns) else str(c)


def _shape_text(spec: InputSpec) -> str:
    return f"(N, {', '.join(map(str, spec.raw_shape))}) with 1 <= N <= {spec.max_batch}"


def check_batch(x: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Shape, batch size, dtype and finiteness checks; returns a float32 ``(N, *raw_shape)``
    (channels-last images ``(N, H, W, C)`` transposed to it)."""
    if x.dtype.kind not in "iuf":
        raise ApiError(422, "bad_dtype", f"inputs have dtype {x.dtype}; allowed: numbers (int or float)")
    from dlopt.data import channels_first

    x = _batch_shaped(channels_first(x, spec.raw_shape), spec)  # (N, H, W, C) images, as training read them
    with np.errstate(over="ignore"):
        out = x.astype(np.float32)
    _refuse_non_finite(out, spec)
    return out


def _batch_shaped(x: np.ndarray, spec: InputSpec) -> np.ndarray:
    """``x`` as ``(N, *raw_shape)`` (one sample gets the batch axis), else a 422."""
    if spec.raw_shape[:1] == (1,) and x.ndim in (2, 3) and x.shape[-2:] == spec.raw_shape[1:]:
        x = x.reshape(-1, *spec.raw_shape)  # gray (H, W) / (N, H, W), as `dlopt predict` takes them
    if x.shape == spec.raw_shape:  # one sample without the batch axis
        x = x[None]
    if x.shape[1:] != spec.raw_shape:
        raise ApiError(422, "bad_shape", f"inputs have shape {x.shape}; allowed: {_shape_text(spec)}")
    if not 1 <= len(x) <= spec.max_batch:
        raise ApiError(422, "bad_batch", f"batch of {len(x)} samples; allowed: {_shape_text(spec)}")
    return x


def _refuse_non_finite(x: np.ndarray, spec: InputSpec) -> None:
    # NaN is a missing value when the model imputes them; Inf and overflow never are
    count = int((np.isinf(x) if spec.missing else ~np.isfinite(x)).sum())
    if count:
        missing = " (a missing value: null or NaN)" if spec.missing else ""
        raise ApiError(422, "non_finite", f"inputs hold {count} NaN/Inf value(s) or values beyond float32; "
                       f"allowed: finite numbers{missing}")


def _from_lists(values: list[Any], *, maybe_bool: bool = True, missing: bool = False) -> np.ndarray:
    """``values`` as a numeric array; ``maybe_bool`` False: the body holds no ``true``/``false``;
    ``missing``: the model imputes missing values (``null``), which the error then allows."""
    try:
        x = np.array(values)
    except (ValueError, TypeError, RecursionError, OverflowError):
        raise ApiError(422, "bad_shape",
                       "inputs are ragged or not numbers; allowed: a rectangular nested list of numbers") from None
    if x.dtype == object and _only_numbers(x):
        x = _big_ints(x)
    # numpy reads [true, 2] as [1, 2]: a boolean among numbers must be looked for
    if x.dtype == bool or x.dtype.kind not in "iuf" or (maybe_bool and _holds_bool(values)):
        allowed = "numbers, or null for a missing value (no strings or booleans)" if missing else \
            "numbers (no strings, booleans or nulls)"
        raise ApiError(422, "bad_dtype", f"inputs must be {allowed}")
    return x


def _only_numbers(x: np.ndarray) -> bool:
    return all(type(v) in (int, float) for v in x.flat)


def _big_ints(x: np.ndarray) -> np.ndarray:
    """Numbers numpy kept as objects: integers beyond int64, as floats (float32 checks them)."""
    try:
        return x.astype(np.float64)
    except OverflowError:
        raise ApiError(422, "non_finite", "inputs hold an integer beyond float32; allowed: "
                       "finite numbers") from None


def _holds_bool(values: list[Any]) -> bool:
    return any(type(v) is bool for v in np.array(values, dtype=object).flat)


def _npy_array(text: str) -> np.ndarray:
    """A .npy from base64, its header checked before any allocation (no pickle, exact size)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_base64", "inputs_npy is not valid base64") from None
    buf = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(buf)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"npy version {version}")
        shape, fortran, dtype = read_header(buf)
    except (ValueError, TypeError, SyntaxError, EOFError):
        raise ApiError(400, "bad_npy", "inputs_npy is not a valid .npy file") from None
    if dtype.hasobject or dtype.kind not in "iuf":
        raise ApiError(422, "bad_dtype", f"inputs_npy has dtype {dtype}; allowed: numbers (int or float)")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    payload = raw[buf.tell():]
    if count * dtype.itemsize != len(payload):
        raise ApiError(400, "bad_npy", f"inputs_npy declares shape {shape} but holds {len(payload)} data bytes")
    order = "F" if fortran else "C"
    return np.frombuffer(payload, dtype=dtype).reshape(shape, order=order)


def _max_json_values(spec: InputSpec) -> int:
    # a full batch has about one comma per number; 10% slack for the list separators
    return int(spec.max_batch * int(np.prod(spec.raw_shape)) * 1.1) + 1024


def decode_json(body: bytes, spec: InputSpec) -> np.ndarray:
    """A JSON body -> validated float32 raw batch."""
    # json.loads makes a 30-60 byte Python object of every value: count them first so that a
    # body of tiny values ("[],[],...") cannot cost 20x its size in memory before the batch check
    if body.count(b",") > _max_json_values(spec):
        raise ApiError(422, "bad_batch", f"body holds more than {_max_json_values(spec)} values; "
                       f"allowed: {_shape_text(spec)}")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "bad_json", "body is not valid JSON") from None
    req = _request(data)
    if req.inputs is None:
        if spec.categories:
            raise ApiError(422, "bad_request", f"inputs_npy takes numbers only, but this model has text "
                           f"column(s) {', '.join(map(spec.column, sorted(spec.categories)))}; "
                           "allowed: 'inputs' rows with strings in those columns")
        return check_batch(_npy_array(req.inputs_npy or ""), spec)
    rows = req.inputs
    if any(isinstance(row, dict) for row in rows):
        rows = _rows_from_objects(rows, spec)
    if spec.categories or (spec.missing and b"null" in body):
        return typed_rows(rows, spec)
    # the walk for booleans only when the body could hold one
    return check_batch(_from_lists(rows, maybe_bool=b"true" in body or b"false" in body, missing=spec.missing), spec)


def _request(data: Any) -> PredictRequest:
    try:
        return PredictRequest.model_validate(data)
    except ValidationError as err:
        from dlopt.config import format_validation_error

        first = err.errors(include_url=False)[0]
        if first["type"] == "extra_forbidden":  # the generic line knows config schemas only
            raise ApiError(422, "bad_request", f"unknown key 'body.{first['loc'][0]}'; allowed: "
                           "inputs (nested lists), inputs_npy (base64 of a .npy file)") from None
        raise ApiError(422, "bad_request", format_validation_error(err, prefix="body.")) from None


def _rows_from_objects(rows: list[Any], spec: InputSpec) -> list[Any]:
    """Table rows sent as objects keyed by the model's column names, as lists in column order."""
    columns = list(spec.columns)
    if len(spec.raw_shape) != 1 or len(columns) != spec.raw_shape[0]:
        raise ApiError(422, "bad_shape", f"a sample is (nested) lists of numbers, not an object; "
                       f"allowed: {_shape_text(spec)}")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ApiError(422, "bad_shape", f"inputs[{i}] is not an object like the other rows; allowed: "
                           f"every row an object keyed by {', '.join(columns)}, or every row a list")
        if set(row) != set(columns):
            wrong = sorted(set(row) - set(columns)) or sorted(set(columns) - set(row))
            what = "unknown" if set(row) - set(columns) else "missing"
            raise ApiError(422, "bad_request",
                           f"inputs[{i}]: {what} column(s) {', '.join(map(repr, wrong))}; allowed: an "
                           f"object with the columns {', '.join(columns)} (or a list in that order)")
        out.append([row[c] for c in columns])
    return out


def typed_rows(values: list[Any], spec: InputSpec) -> np.ndarray:
    """JSON rows of a model with text columns or imputation: strings in its text columns (an
    object table, as ``dlopt predict`` reads a CSV), numbers elsewhere, ``null`` for a missing
    value where the model imputes them (NaN)."""
    try:
        x = np.array(values, dtype=object)
    except (ValueError, RecursionError):
        raise ApiError(422, "bad_shape", f"inputs are ragged; allowed: {_shape_text(spec)}") from None
    x = _batch_shaped(x, spec)
    flat = x.reshape(len(x), -1)
    text = sorted(spec.categories)
    for c in text:
        _check_cells(flat[:, c], (str,), c, spec, "text (a category, e.g. "
                     f"{next(iter(spec.categories[c]), '')!r})")
    numeric = np.setdiff1d(np.arange(flat.shape[1]), text)
    numbers = _numbers(flat[:, numeric], numeric, spec)
    if not text:
        return numbers.reshape(x.shape)
    out = flat.copy()
    out[:, numeric] = numbers
    for c in text:  # compared as training stored them: CSV cells are stripped
        out[:, c] = [v.strip() for v in out[:, c]]
    return out.reshape(x.shape)


def _numbers(cells: np.ndarray, columns: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Number columns of an object table as float32, ``null`` as NaN where the model imputes."""
    allowed = (int, float, type(None)) if spec.missing else (int, float)
    for i, c in enumerate(columns):
        _check_cells(cells[:, i], allowed, int(c), spec,
                     "numbers" + (" or null (missing)" if spec.missing else ""))
    missing = np.equal(cells, None)
    with np.errstate(over="ignore"):
        try:
            out = np.where(missing, 0.0, cells).astype(np.float32)
        except OverflowError:  # a JSON integer beyond float64
            raise ApiError(422, "non_finite",
                           "inputs hold an integer beyond float32; allowed: finite numbers") from None
    _refuse_non_finite(out, spec)
    out[missing] = np.nan
    return out


def _check_cells(cells: np.ndarray, allowed: tuple[type, ...], c: int, spec: InputSpec, what: str) -> None:
    # type(v) is exact: bool is an int subclass, and true/false are no numbers here
    wrong = next((v for v in cells if type(v) not in allowed), _NONE)
    if wrong is not _NONE:
        raise ApiError(422, "bad_dtype", f"column {spec.column(c)} holds {json.dumps(wrong)[:40]}; allowed: {what}")


_NONE = object()


def _image_array(data: bytes, spec: InputSpec) -> np.ndarray:
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
    except Exception:  # noqa: BLE001  PIL's decoders raise many types on hostile bytes
        raise ApiError(415, "bad_image", "upload is not a PNG or JPEG image") from None
    if img.format not in _IMAGE_FORMATS:
        raise ApiError(415, "bad_image", f"image format {img.format}; allowed: PNG, JPEG")
    w, h = img.size
    if w * h > MAX_IMAGE_PIXELS:
        raise ApiError(413, "image_too_large", f"image of {w}x{h} pixels; allowed: at most {MAX_IMAGE_PIXELS} pixels")
    channels, height, width = spec.raw_shape
    from dlopt.data import image_8bit
    from dlopt.errors import DataError

    try:
        img = image_8bit(img)  # 16-bit PNGs scaled as training scales them, not clipped to 255
    except DataError as exc:
        raise ApiError(422, "bad_image", str(exc)) from None
    except Exception:  # noqa: BLE001  truncated/corrupt data fails inside PIL's decoders
        raise ApiError(400, "bad_image", "image data is truncated or corrupt") from None
    try:
        img = img.convert(_MODES[channels])
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    except Exception:  # noqa: BLE001  truncated/corrupt data fails inside PIL's decoders
        raise ApiError(400, "bad_image", "image data is truncated or corrupt") from None
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def decode_images(images: list[bytes], spec: InputSpec) -> np.ndarray:
    """PNG/JPEG files -> a raw batch (resized to the model's H x W, converted to its channels)."""
    if not spec.takes_images:
        raise ApiError(415, "not_an_image_model",
                       f"this model takes inputs of shape {spec.raw_shape}, not images; send JSON")
    if not images:
        raise ApiError(422, "bad_request", "multipart body needs one or more 'image' files")
    if len(images) > spec.max_batch:
        raise ApiError(422, "bad_batch", f"{len(images)} images; allowed: at most {spec.max_batch}")
    return check_batch(np.stack([_image_array(d, spec) for d in images]), spec)
