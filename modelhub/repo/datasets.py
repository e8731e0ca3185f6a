"""Versioned datasets: `dlv data add NAME FILES...` appends records as a new version.

Inputs: a ``.npz`` with arrays ``x`` and ``y``; two ``.npy`` files (inputs, then
labels); a ``.safetensors`` file with tensors ``x`` and ``y``; or a folder of
images (PNG, PGM/PPM or .npy) with a ``labels.csv``/``labels.txt`` of
``filename,label`` lines. Arrays are stored as ``.npy`` blobs in the object
store (written before the catalog rows that reference them).
"""
from __future__ import annotations

import io
import json
import math
import re
import struct
import uuid
import zipfile
import zlib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..catalog import datasets as catalog_datasets
from ..catalog import objects as catalog_objects
from ..catalog.datasets import DatasetRow
from ..engine.errors import DatasetError

if TYPE_CHECKING:   # the engine's view imports torch; `dlv data add` must not pay for it
    from ..engine.data import DataView

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class DatasetVersion:
    name: str
    version: int
    n_records: int
    added: int
    record_shape: tuple[int, ...]
    message: str
    created_at: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["record_shape"] = list(self.record_shape)
        d["ref"] = self.ref
        return d


# -- reading input files ---------------------------------------------------------------
def read_arrays(files: Sequence[str | Path]) -> tuple[np.ndarray | list[np.ndarray], np.ndarray]:
    """(inputs, labels); inputs is a list of arrays for multi-input records (x0, x1, ...)."""
    paths = [Path(f) for f in files]
    if not paths:
        raise DatasetError("no files given; pass a .npz, two .npy files (x then y), a .safetensors file or an image folder")
    for p in paths:
        if not p.exists():
            raise DatasetError(f"{p} does not exist; check the path")
    if len(paths) == 1 and paths[0].is_dir():
        return _read_image_folder(paths[0])
    if len(paths) == 1 and paths[0].suffix == ".npz":
        return _read_npz(paths[0])
    if len(paths) == 1 and paths[0].suffix == ".safetensors":
        from safetensors.numpy import load_file
        try:
            return _pick(load_file(str(paths[0])), paths[0])
        except Exception as exc:  # safetensors raises its own types for bad files
            raise DatasetError(f"cannot read {paths[0]} as safetensors ({exc}); check the file") from None
    if len(paths) == 2 and all(p.suffix == ".npy" for p in paths):
        return _read_npy_file(paths[0]), _read_npy_file(paths[1])
    raise DatasetError(
        "unsupported input; pass one .npz (x, y), two .npy files (x then y), one .safetensors (x, y) "
        "or one folder of images with labels.csv"
    )


# -- .npy / .npz without trusting their headers ------------------------------------------------
# numpy allocates the shape a header declares before reading the data, so a
# damaged or hostile header could ask for petabytes. The header is read first
# and checked against the bytes the file really holds.
_NPY_HINT = "save plain numeric arrays with numpy.save / numpy.savez"


def _read_npy_file(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as fh:
            return _read_npy(fh, path.stat().st_size, str(path))
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}; check the file") from None


def _read_npz(path: Path) -> tuple[np.ndarray | list[np.ndarray], np.ndarray]:
    try:
        with zipfile.ZipFile(path) as zf:
            members = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
            xk, yk = _pick_names(members, path)
            out = {}
            for key in (*_input_names(xk), yk):
                with zf.open(members[key]) as fh:
                    out[key] = _read_npy(fh, members[key].file_size, f"{path}:{key}")
            return _inputs(out, xk), out[yk]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise DatasetError(f"{path} is not a readable .npz file ({exc}); it is truncated or damaged: "
                           f"{_NPY_HINT}") from None


def _read_npy(fh, available: int, label: str) -> np.ndarray:
    """One array from an open .npy stream holding at most ``available`` bytes (header included)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise DatasetError(f"{label} is not a readable .npy array ({exc}); {_NPY_HINT}") from None
    if dtype.hasobject:
        raise DatasetError(f"{label} holds Python objects (an object array), which are never unpickled; {_NPY_HINT}")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > available:
        raise DatasetError(
            f"{label} declares shape {list(shape)} ({nbytes:,} bytes) but the file holds {available:,} bytes; "
            f"it is truncated or damaged: {_NPY_HINT}")
    out = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    view = memoryview(out.reshape(-1, order="A").view(np.uint8)) if out.size else memoryview(b"")
    got = 0
    while got < nbytes:
        n = fh.readinto(view[got:])
        if not n:
            raise DatasetError(f"{label} ends after {got:,} of its {nbytes:,} data bytes; it is truncated: {_NPY_HINT}")
        got += n
    return out


def _pick_names(names, path: Path) -> tuple[str | list[str], str]:
    """The input and label names: x/y (and the usual aliases), or for records with several
    inputs x0, x1, ... (in the order of the network's forward arguments) and y."""
    for xk, yk in (("x", "y"), ("X", "y"), ("images", "labels"), ("inputs", "targets")):
        if xk in names and yk in names:
            return xk, yk
    multi = [f"x{i}" for i in range(len(names)) if f"x{i}" in names]
    if multi and "y" in names and multi == [f"x{i}" for i in range(len(multi))]:
        return multi, "y"
    raise DatasetError(f"{path} holds {sorted(names)}; name the arrays x (inputs) and y (labels), "
                       "or x0, x1, ... and y for records with several inputs")


def _input_names(xk: str | list[str]) -> list[str]:
    return [xk] if isinstance(xk, str) else xk


def _inputs(arrays: dict, xk: str | list[str]) -> np.ndarray | list[np.ndarray]:
    return np.asarray(arrays[xk]) if isinstance(xk, str) else [np.asarray(arrays[k]) for k in xk]


def _pick(arrays: dict, path: Path) -> tuple[np.ndarray | list[np.ndarray], np.ndarray]:
    xk, yk = _pick_names(arrays, path)
    return _inputs(arrays, xk), np.asarray(arrays[yk])


#: x_dtype of a dataset whose records hold several inputs, stored packed (engine/packing.py)
_PACKED = "packed:"


def _pack_inputs(inputs: list[np.ndarray]) -> tuple[np.ndarray, str]:
    """Several inputs per record -> one float32 word array (bit-exact) and the x_dtype naming
    their layout; each keeps its dtype (token ids stay int64)."""
    from ..engine.packing import pack_arrays
    n = {len(a) for a in inputs}
    if len(n) != 1 or any(a.ndim < 1 for a in inputs):
        raise DatasetError(f"the inputs x0, x1, ... must have one row per record each; they have "
                           f"{[list(a.shape) for a in inputs]}")
    for i, a in enumerate(inputs):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise DatasetError(f"input x{i} is {a.dtype}; inputs must be numeric arrays")
    packed, layout = pack_arrays(inputs)
    return packed, _PACKED + json.dumps(layout.describe())


def _read_image_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    labels_file = next((folder / n for n in ("labels.csv", "labels.txt") if (folder / n).is_file()), None)
    if labels_file is None:
        raise DatasetError(f"{folder} has no labels.csv; add one with lines `filename,label`")
    xs, ys = [], []
    for lineno, line in enumerate(labels_file.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#") or line.lower().startswith("filename,"):
            continue
        name, _, label = line.partition(",")
        if not label:
            raise DatasetError(f"{labels_file}:{lineno} is not `filename,label`; fix that line")
        xs.append(_read_image(folder / name.strip()))
        try:
            ys.append(int(label))
        except ValueError:
            ys.append(float(label))
    if not xs:
        raise DatasetError(f"{labels_file} lists no images; add `filename,label` lines")
    if len({x.shape for x in xs}) != 1:
        raise DatasetError(f"the images in {folder} differ in size; resize them to one size first")
    return np.stack(xs), np.asarray(ys)


def _read_image(path: Path) -> np.ndarray:
    """(channels, height, width) float32 in [0, 1]."""
    if not path.is_file():
        raise DatasetError(f"image {path} listed in the labels file does not exist")
    if path.suffix == ".npy":
        a = _read_npy_file(path)
        if not np.issubdtype(a.dtype, np.number) or a.ndim not in (2, 3):
            raise DatasetError(f"image {path} is not a numeric (height, width) or (channels, height, width) array")
        a = a.astype(np.float32)
        return a if a.ndim == 3 else a[None]
    data = path.read_bytes()
    if data[:2] in (b"P5", b"P6"):
        return _read_netpbm(data, path)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _read_png(data, path)
    raise DatasetError(f"{path}: unsupported image format; use PNG (8-bit), PGM/PPM or .npy")


def _read_netpbm(data: bytes, path: Path) -> np.ndarray:
    tokens = re.match(rb"(P[56])\s+(\d+)\s+(\d+)\s+(\d+)\s", data)
    if not tokens or int(tokens.group(4)) > 255:
        raise DatasetError(f"{path}: only 8-bit binary PGM/PPM images are supported")
    w, h = int(tokens.group(2)), int(tokens.group(3))
    c = 1 if tokens.group(1) == b"P5" else 3
    if len(data) - tokens.end() < w * h * c:
        raise DatasetError(f"{path}: the image is truncated ({w}x{h} pixels declared); re-export it")
    raw = np.frombuffer(data[tokens.end():tokens.end() + w * h * c], dtype=np.uint8)
    return raw.reshape(h, w, c).transpose(2, 0, 1).astype(np.float32) / 255.0


def _read_png(data: bytes, path: Path) -> np.ndarray:
    damaged = f"{path}: the PNG is truncated or damaged; re-export it"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        if pos + 12 > len(data):
            raise DatasetError(damaged)
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length:
            raise DatasetError(damaged)
        if kind == b"IHDR":
            if length != 13:
                raise DatasetError(damaged)
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise DatasetError(f"{path}: not a valid PNG (no IHDR)")
    w, h, depth, color, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace:
        raise DatasetError(f"{path}: only 8-bit non-interlaced gray/RGB(A) PNGs are supported; convert it")
    if w == 0 or h == 0:
        raise DatasetError(damaged)
    stride = w * channels
    expected = h * (stride + 1)
    try:  # never inflate more than the declared image needs (a hostile IDAT may be a zip bomb)
        inflate = zlib.decompressobj()
        raw = inflate.decompress(idat, expected)
    except zlib.error:
        raise DatasetError(damaged) from None
    if len(raw) != expected:
        raise DatasetError(damaged)
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for r in range(h):
        f = raw[r * (stride + 1)]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=r * (stride + 1) + 1).astype(np.int32)
        cur = np.zeros(stride, dtype=np.int32)
        for i in range(stride):   # PNG filters are sequential by nature
            a = cur[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 0:
                pred = 0
            elif f == 1:
                pred = a
            elif f == 2:
                pred = b
            elif f == 3:
                pred = (a + b) // 2
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            else:
                raise DatasetError(damaged)
            cur[i] = (line[i] + pred) & 0xFF
        out[r] = cur
        prev = cur
    return out.reshape(h, w, channels).transpose(2, 0, 1).astype(np.float32) / 255.0


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


# -- repository operations -------------------------------------------------------------------
def add_dataset(repo, name: str, files: Sequence[str | Path], message: str = "") -> DatasetVersion:
    if not _NAME.match(name or ""):
        raise DatasetError(f"dataset name {name!r} is not valid; use letters, digits, '_', '-' and '.'")
    x, y = read_arrays(files)
    x_dtype = None
    if isinstance(x, list):
        x, x_dtype = _pack_inputs(x)
    if x.ndim < 1:
        raise DatasetError(f"the inputs x are a single value (shape {list(x.shape)}); give one row per record")
    if y.ndim != 1 or len(x) != len(y):
        raise DatasetError(
            f"inputs have {len(x)} records but labels have shape {list(y.shape)}; give one label per record"
        )
    if len(x) == 0:
        raise DatasetError("the files hold no records; add at least one")
    if not (np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number)):
        raise DatasetError("inputs and labels must be numeric arrays; convert them before adding")
    x = x.astype(np.float32) if x.dtype != np.float32 else x
    x_dtype = x_dtype or str(x.dtype)
    y = y.astype(np.int64) if np.issubdtype(y.dtype, np.integer) else y.astype(np.float32)
    x_blob, y_blob = _npy_bytes(x), _npy_bytes(y)
    # Blobs first, then the catalog rows. ``put`` refreshes the mtime of a
    # blob that is already here (an orphan of an earlier, killed add), so
    # gc's grace period protects it until the rows below land.
    xh, yh = repo.store.put(x_blob), repo.store.put(y_blob)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with repo.catalog.write() as con:
        # Under the lock no gc runs; one that ran between the puts above and
        # this point may have removed an old blob after all: write it again.
        for blob_hash, blob in ((xh, x_blob), (yh, y_blob)):
            if not repo.store.has(blob_hash):
                repo.store.put(blob)
        existing = catalog_datasets.dataset(con, name)
        shape = list(x.shape[1:])
        if existing is None:
            catalog_datasets.insert_dataset(
                con, DatasetRow(name, uuid.uuid4().hex, tuple(shape), x_dtype, str(y.dtype)), now)
            version, start = 1, 0
        else:
            if list(existing.record_shape) != shape or existing.x_dtype != x_dtype or existing.y_dtype != str(y.dtype):
                raise DatasetError(
                    f"dataset {name} holds records of shape {list(existing.record_shape)} "
                    f"({_describe_x(existing.x_dtype)}) with {existing.y_dtype} labels; the new records are "
                    f"{shape} ({_describe_x(x_dtype)}) with {y.dtype} labels; convert them or use another name"
                )
            version, start = catalog_datasets.next_version(con, name)
        end = int(start) + len(x)
        for part, blob_hash, blob in (("x", xh, x_blob), ("y", yh, y_blob)):
            catalog_objects.add_blob(con, blob_hash, len(blob))
            catalog_datasets.insert_chunk(con, name, int(start), end, part, blob_hash, len(blob))
        msg = message or f"add {len(x)} records"
        catalog_datasets.insert_version(con, name, int(version), end, msg, now)
    return DatasetVersion(name, int(version), end, len(x), tuple(shape), msg, now.isoformat(timespec="seconds"))


def _describe_x(x_dtype: str) -> str:
    if x_dtype.startswith(_PACKED):
        return "inputs " + ", ".join(f"x{i}: {dt} {shape}" for i, (shape, dt) in
                                     enumerate(json.loads(x_dtype[len(_PACKED):])))
    return x_dtype


def parse_dataset_ref(ref: str) -> tuple[str, int | None]:
    name, at, ver = ref.partition("@")
    if not at:
        return name, None
    if not ver.isdigit() or int(ver) < 1:
        raise DatasetError(f"dataset reference {ref!r} is not NAME or NAME@N (N from 1); fix the reference")
    return name, int(ver)


def load_dataset(repo, ref: str) -> DataView:
    name, version = parse_dataset_ref(ref)
    with repo.catalog.read() as con:
        ds = catalog_datasets.dataset(con, name)
        if ds is None:
            known = catalog_datasets.dataset_names(con)
            raise DatasetError(
                f"no dataset named {name!r} (known: {', '.join(known) or 'none'}); add it with `dlv data add {name} FILES`"
            )
        if version is None:
            version = catalog_datasets.latest_version(con, name)
        n = catalog_datasets.n_records(con, name, version)
        if n is None:
            last = catalog_datasets.latest_version(con, name)
            raise DatasetError(f"dataset {name} has versions 1 to {last}; choose one of them")
        chunks = catalog_datasets.chunks(con, name, n)
    parts: dict[str, list[np.ndarray]] = {"x": [], "y": []}
    for chunk in chunks:
        parts[chunk.part].append(np.load(io.BytesIO(repo.store.get(chunk.blob_hash)), allow_pickle=False))
    x, y = np.concatenate(parts["x"]), np.concatenate(parts["y"])
    meta: dict = {"ref": f"{name}@{version}"}
    if ds.x_dtype.startswith(_PACKED):
        meta["layout"] = json.loads(ds.x_dtype[len(_PACKED):])
    from ..engine.data import DataView
    return DataView(ds.uid, int(version), x, y, name=name, meta=meta)


def list_datasets(repo) -> list[DatasetVersion]:
    """The latest version of each dataset."""
    latest: dict[str, DatasetVersion] = {}
    for v in _all_versions(repo):
        latest[v.name] = v
    return list(latest.values())


def dataset_versions(repo, name: str) -> list[DatasetVersion]:
    return [v for v in _all_versions(repo) if v.name == name]


def _all_versions(repo) -> list[DatasetVersion]:
    with repo.catalog.read() as con:
        rows = catalog_datasets.version_history(con)
    return [DatasetVersion(r.name, r.version, r.n_records, r.added, r.record_shape, r.message,
                           r.created_at.isoformat(timespec="seconds")) for r in rows]
