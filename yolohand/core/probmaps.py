"""Probability-map files: the one format every model writes to be evaluated and ensembled.

One compressed ``.npz`` per image, named after the image's stem (``image1661130828152.npz``),
holding two arrays:

- ``probs``: uint8 ``(29, H, W)``, the probability of each class times 255, rounded
  (``u8 = round(p * 255)``), channels in :data:`yolohand.core.classes.CLASSES` order;
- ``classes``: the 29 class names (unicode array), checked on load.

A pixel counts as foreground at the competition threshold ``p >= 0.5`` exactly when
``u8 >= 128`` (:data:`THRESHOLD_U8`): ``0.5 * 255 = 127.5`` rounds to 128, and every
``p < 0.5`` rounds to at most 127.

This module needs numpy only, so any model (an SMP/UNet script, say) can write maps that
``yolohand evaluate`` and ``yolohand ensemble --probs`` read. Copying this file alone is
enough (it falls back to plain writes when the rest of yolohand is absent)::

    import numpy as np
    from yolohand.core.probmaps import save_probmap, load_probmap, probmap_path

    probs = torch.sigmoid(logits)[0].cpu().numpy()           # float (29, H, W) in [0, 1]
    save_probmap(probmap_path("probs/unetpp", "image1661319116107.png"), probs)
    u8 = load_probmap("probs/unetpp/image1661319116107.npz")  # uint8 (29, H, W)
    masks = u8 >= 128                                          # bool (29, H, W): p >= 0.5
"""

from __future__ import annotations

import contextlib
import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

try:  # inside yolohand
    from yolohand.core.atomic import atomic_file
    from yolohand.core.classes import CLASSES
    from yolohand.errors import YolohandError
except ImportError:  # pragma: no cover - this file copied on its own into another project
    CLASSES = tuple(f"finger-{i}" for i in range(1, 20)) + (
        "Trapezium", "Trapezoid", "Capitate", "Hamate", "Scaphoid", "Lunate", "Triquetrum",
        "Pisiform", "Radius", "Ulna",
    )
    YolohandError = ValueError  # type: ignore[misc,assignment]

    @contextlib.contextmanager  # type: ignore[no-redef]
    def atomic_file(path, force=False, mode="w"):
        tmp = Path(f"{path}.tmp")
        try:
            with open(tmp, mode) as fh:
                yield fh
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

#: File extension of a probability map.
SUFFIX = ".npz"
#: ``u8 >= THRESHOLD_U8`` is the same as ``p >= 0.5`` when ``u8 = round(p * 255)``.
THRESHOLD_U8 = 128


def probmap_path(folder: str | os.PathLike, image_name: str) -> Path:
    """``<folder>/<stem of image_name>.npz`` (``image_name`` may carry an ID folder)."""
    return Path(folder) / (Path(image_name).stem + SUFFIX)


def to_uint8(probs: np.ndarray) -> np.ndarray:
    """Probabilities in [0, 1] (any shape) -> uint8 ``floor(p * 255 + 0.5)``; uint8 passes through.

    Works channel by channel (last two axes) with one scratch buffer, so memory stays at one
    channel. float64 input is converted exactly; float32 input (what torch gives) is computed in
    float32, which can move a value lying within one float32 step of a rounding tie by one level
    but never across the threshold: ``p >= 0.5`` still gives >= 128 and ``p < 0.5`` <= 127.
    Raises ValueError on NaN / infinity, values outside [0, 1], or a non-float dtype.
    """
    probs = np.asarray(probs)
    if probs.dtype == np.uint8:
        return probs
    if probs.dtype == np.bool_:
        return probs.astype(np.uint8) * 255
    if not np.issubdtype(probs.dtype, np.floating):
        raise ValueError(f"probabilities must be float in [0, 1] or uint8, got dtype {probs.dtype}")
    work = np.float64 if probs.dtype == np.float64 else np.float32
    flat_in = probs.reshape(-1, *probs.shape[-2:]) if probs.ndim >= 2 else probs.reshape(1, -1)
    out = np.empty(flat_in.shape, dtype=np.uint8)
    scratch = np.empty(flat_in.shape[1:], dtype=work)
    for i in range(flat_in.shape[0]):
        channel = flat_in[i]
        if channel.size:
            lo, hi = float(channel.min()), float(channel.max())
            if not (np.isfinite(lo) and np.isfinite(hi)):  # NaN propagates through min/max
                raise ValueError("probabilities contain NaN or infinity")
            if lo < 0.0 or hi > 1.0:
                raise ValueError(f"probabilities must lie in [0, 1], got values in [{lo:g}, {hi:g}]")
        np.multiply(channel, work(255.0), out=scratch, dtype=work, casting="unsafe")
        scratch += work(0.5)
        out[i] = scratch  # the cast truncates, which is floor for these non-negative values
    return out.reshape(probs.shape)


def save_probmap(
    path: str | os.PathLike, probs: np.ndarray, class_names: Sequence[str] = CLASSES
) -> None:
    """Write one image's maps to ``path`` (a compressed ``.npz``), atomically.

    ``probs``: float ``(C, H, W)`` in [0, 1], bool, or uint8 already scaled to 0..255, with
    ``C == len(class_names)``. Stored as uint8 ``round(p * 255)`` under key ``probs``, with the
    names under ``classes``. An existing file is replaced (the folder is the unit that callers
    protect with ``--force``); a crash never leaves a partial file.
    """
    path = Path(path)
    probs = np.asarray(probs)
    names = list(class_names)
    if probs.ndim != 3 or probs.shape[0] != len(names):
        raise YolohandError(f"{path}: probabilities must have shape ({len(names)}, H, W), got {probs.shape}")
    try:
        u8 = np.ascontiguousarray(to_uint8(probs))
    except ValueError as exc:
        raise YolohandError(f"{path}: {exc}") from None
    with atomic_file(path, force=True, mode="wb") as fh:
        # A file object (not a name) stops numpy from appending a second ".npz".
        np.savez_compressed(fh, probs=u8, classes=np.array(names, dtype=str))


def load_probmap(
    path: str | os.PathLike,
    class_names: Sequence[str] = CLASSES,
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Read ``path`` -> uint8 ``(C, H, W)``, checked.

    YolohandError naming the file when it is missing or not an ``.npz``, lacks the ``probs``
    or ``classes`` key, ``probs`` is not uint8 of shape ``(len(class_names), H, W)`` (and
    ``(H, W) == shape`` when ``shape`` is given), or the stored class names differ; and when it
    is corrupt: a damaged compressed block, or a header that claims more than the file holds
    (``(29, 30000, 30000)`` in a small file). Dtype and shape are checked from the ``.npy``
    header before anything is decompressed or allocated.
    """
    path = Path(path)
    names = list(class_names)
    with _open(path) as zf:
        try:
            dims = _check_header(path, zf, len(names), shape)
            stored = [str(c) for c in np.atleast_1d(_read_array(zf, "classes"))]
            _check_names(path, stored, names)
            probs = _read_array(zf, "probs")
        except YolohandError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            # zlib's "Error -3 while decompressing data", a bad CRC, a stream that ends early
            raise YolohandError(f"{path}: corrupt probability map ({' '.join(str(exc).split())}); write it again") from None
    if probs.shape != dims:  # the header said so; a short file would have failed to read
        raise YolohandError(f"{path}: corrupt probability map ('probs' read as {probs.shape}, header {dims})")
    return probs


def _open(path: Path) -> zipfile.ZipFile:
    """The .npz ``path`` opened as a zip archive; YolohandError when missing or not an archive."""
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise YolohandError(f"{path}: probability map not found") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise YolohandError(f"{path}: not a readable .npz probability map ({exc})") from None


#: Largest side of a map (the largest image side yolohand reads).
MAX_MAP_SIDE = 65536


def _header(path: Path, zf: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, bytes the array's data must take) from the ``.npy`` header of ``key`` in the
    open .npz ``zf``; YolohandError when the key is missing or the header does not match the file's size."""
    try:
        info = zf.getinfo(f"{key}.npy")
    except KeyError:
        keys = sorted(n.removesuffix(".npy") for n in zf.namelist())
        raise YolohandError(f"{path}: no '{key}' array (has: {keys or 'nothing'})") from None
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh)
        start = fh.tell()
    size = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if dtype.hasobject or info.file_size != start + size:
        raise YolohandError(f"{path}: corrupt probability map: the header of '{key}' says {tuple(shape)} {dtype} "
                            f"({start + size} bytes) but the file holds {info.file_size}")
    return tuple(int(d) for d in shape), dtype, size


def _check_header(path: Path, zf: zipfile.ZipFile, channels: int, shape: tuple[int, int] | None) -> tuple[int, ...]:
    """The ``probs`` shape from its header, checked (dtype, channels, sides, ``shape``) before reading."""
    _header(path, zf, "classes")
    dims, dtype, _ = _header(path, zf, "probs")
    if dtype != np.uint8:
        raise YolohandError(f"{path}: 'probs' must be uint8 (probability x 255), got {dtype}")
    _check_sides(path, dims, channels)
    if shape is not None and tuple(dims[1:]) != tuple(shape):
        raise YolohandError(f"{path}: maps are {dims[1]}x{dims[2]} but the image is {shape[0]}x{shape[1]}")
    need, free = int(np.prod(dims, dtype=object)), _free_memory()
    if free is not None and need > free:
        raise YolohandError(f"{path}: its maps are {dims[1]}x{dims[2]} ({need / 2**30:.1f} GiB), more than the "
                            f"{free / 2**30:.1f} GiB of memory free here")
    return dims


def _free_memory() -> int | None:
    """Bytes of memory available (Linux ``MemAvailable``); None when not known."""
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def _read_array(zf: zipfile.ZipFile, key: str) -> np.ndarray:
    with zf.open(f"{key}.npy") as fh:
        return np.lib.format.read_array(fh, allow_pickle=False)


def _check_names(path: Path, stored: list[str], names: list[str]) -> None:
    if stored != names:
        diff = next((i for i, (a, b) in enumerate(zip(stored, names)) if a != b), min(len(stored), len(names)))
        got = stored[diff] if diff < len(stored) else "<end>"
        want = names[diff] if diff < len(names) else "<end>"
        raise YolohandError(
            f"{path}: class names differ from the expected {len(names)} at index {diff}: "
            f"file has {got!r}, expected {want!r}"
        )


def probmap_shape(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of a probability-map file, read from the .npy header inside the .npz (the maps
    themselves are not decompressed). YolohandError when it is not a readable map file."""
    path = Path(path)
    with _open(path) as zf:
        try:
            dims, _, _ = _header(path, zf, "probs")
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise YolohandError(f"{path}: corrupt probability map ({' '.join(str(exc).split())})") from None
    _check_sides(path, dims, None)
    return dims[1], dims[2]


def _check_sides(path: Path, dims: tuple[int, ...], channels: int | None) -> None:
    """YolohandError unless ``dims`` is (channels, H, W) (any channels when None) with sides 1..MAX_MAP_SIDE."""
    if len(dims) != 3 or (channels is not None and dims[0] != channels):
        raise YolohandError(f"{path}: 'probs' must have shape ({channels or len(CLASSES)}, H, W), got {dims}")
    if not all(0 < d <= MAX_MAP_SIDE for d in dims[1:]):
        raise YolohandError(f"{path}: 'probs' claims {dims[1]}x{dims[2]} maps; sides must be 1..{MAX_MAP_SIDE}")


def iter_probmap_folder(folder: str | os.PathLike, suffix: str = ".png") -> list[tuple[str, Path]]:
    """``[(image_name, path), ...]`` for every ``*.npz`` directly in ``folder``, sorted by name.

    The image name is the file's stem plus ``suffix`` (the competition's images are PNG);
    callers matching against real images should compare stems. YolohandError when ``folder``
    is not a folder; an empty list when it holds no maps.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise YolohandError(f"{folder}: probability-map folder not found")
    paths = sorted(p for p in folder.iterdir() if p.suffix == SUFFIX and p.is_file() and not p.name.startswith("."))
    return [(p.stem + suffix, p) for p in paths]


__all__ = [
    "SUFFIX", "THRESHOLD_U8", "probmap_path", "to_uint8", "save_probmap", "load_probmap",
    "iter_probmap_folder", "probmap_shape",
]
