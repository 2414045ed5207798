"""Batch inputs -> a checked, ordered list of scenes, each with the id its outputs are named after.

An input is a scene (GeoTIFF, Sentinel-1 ``.SAFE`` folder / ``.zip`` / ``manifest.safe``), a folder
searched recursively, a text list (one path per line, ``#`` comments at a line's start or after a
blank, relative to the list's folder),
or a local STAC ItemCollection / Catalog / Collection JSON. Everything is resolved before the first
worker starts, so a missing file or two scenes with one id (their outputs would collide in
``DIR/<id>/``) stop the run at once instead of after hours of work. Folder walks never enter a batch
output folder (``--out``, or any folder holding ``batch.json`` / ``manifest.jsonl``): its class maps
are not scenes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from dakd_edge.batch.manifest import MANIFEST, OPTIONS, is_batch_folder
from dakd_edge.errors import InputError

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")
# NetCDF / HDF5 files: a one-variable file is a scene; a container of several fails in its own scene,
# listing its variables (give them as NETCDF:"f.nc":VAR lines of a list), never vanishing from a walk.
CONTAINER_SUFFIXES = (".nc", ".h5", ".hdf5", ".he5")
LIST_SUFFIXES = (".txt", ".lst", ".list")
# STAC asset keys tried first, any case: the polarisation read (without --pol, the first of _POLS an
# item has: the reader's default), then generic data keys, before any other raster/zip asset
_POLS = ("VV", "HH", "VH", "HV")
ASSET_KEYS = ("safe", "product", "data", "image", "visual")
_ID_BAD = re.compile(r"[^\w.+=@-]")
_COMMENT = re.compile(r"(?:^|\s)#")  # a list comment starts a line or follows a blank


@dataclass(frozen=True)
class Scene:
    """One scene to segment: its id (output folder name), path, and metadata known before reading it."""

    id: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict, compare=False)  # STAC start_time / platform


def scene_id(path: Path) -> str:
    """The id ``segment`` names outputs after: file stem, or the Sentinel-1 product name."""
    from dakd_edge.cli.segment import scene_stem

    return safe_id(scene_stem(path))


def name_meta(path: Path) -> dict[str, Any]:
    """``start_time`` / ``platform`` a file name states (HyP3 and OPERA names: both; ALOS: the platform,
    since its date alone, as a time, would merge two passes of one day): the layer's acquisition
    columns, where the scene itself carries no product metadata. Empty for other names."""
    from dakd_edge.data.products import parse_name

    named = parse_name(path.name)
    if named is None:
        return {}
    return {k: v for k, v in (("start_time", named.start_time), ("platform", named.platform)) if v}


def named_scene(path: Path) -> Scene:
    """The :class:`Scene` of a path: its :func:`scene_id`, and what its name says of the acquisition."""
    return Scene(scene_id(path), path, name_meta(path))


def safe_id(text: str) -> str:
    """An id usable as one folder name on any filesystem (STAC ids may hold '/' or ':')."""
    return _ID_BAD.sub("_", text).strip(".") or "scene"


def expand_inputs(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    skip: str | os.PathLike | None = None,
    notes: dict[str, list[str]] | None = None,
    pol: str | None = None,
) -> list[Scene]:
    """All scenes named by ``inputs``, in the given order (folders sorted), duplicates of one file once
    (through a symlink or a hard link too).

    Paths are made absolute: workers may run in another folder (or on another machine of a cluster,
    which must see the same paths). Folder walks skip the folder ``skip`` (the batch's ``--out``, which
    may not exist yet) and every batch folder. One Sentinel-1 product given in several forms (``NAME.SAFE``
    beside its ``NAME.zip`` or ``<uuid>.zip``, a STAC item whose asset lies in that folder, a
    measurement TIFF that reads the polarisation the product reads: ``pol``, the batch's ``--pol``) is
    one scene, run from its most complete form, and ``notes[id]`` says so (:func:`_one_per_product`).
    Raises :class:`InputError` for a missing input, an input without any scene, and for two different
    files that map to one scene id.
    """
    if isinstance(inputs, str | os.PathLike):  # one path: its characters were inputs ("/" walked the disk)
        inputs = [inputs]
    from dakd_edge.data.gdalnames import is_gdal_name

    scenes: dict[Path | tuple[int, int], Scene] = {}
    out = Path(skip).resolve() if skip is not None else None
    for item in inputs:
        if is_gdal_name(item):  # NETCDF:"f.nc":VAR, /vsizip/...: GDAL finds it, as segment lets it
            scenes.setdefault(Path(item), named_scene(Path(item)))
            continue
        for s in _expand(Path(item).absolute(), 0, out, pol):
            scenes.setdefault(_file_key(s.path), s)
    if not scenes:
        raise InputError("no scenes found in the inputs")
    kept = _one_per_product(list(scenes.values()), pol, notes)
    by_id: dict[str, Scene] = {}
    for s in kept:
        other = by_id.setdefault(s.id, s)
        if other is not s:
            raise InputError(
                f"two scenes have the id {s.id!r} (outputs would collide in <out>/{s.id}/): "
                f"{other.path} and {s.path}"
            )
    return kept


# Forms of one product, the one to run first: its SAFE folder, a flattened copy's folder, a zip, a TIFF.
_SAFE, _FOLDER, _ZIP, _TIFF = range(4)


def _form(path: Path) -> int:
    if path.is_dir():
        return _SAFE if path.suffix.lower() == ".safe" else _FOLDER
    return _ZIP if path.suffix.lower() == ".zip" else _TIFF


def _one_per_product(scenes: list[Scene], pol: str | None, notes: dict[str, list[str]] | None) -> list[Scene]:
    """``scenes`` without the Sentinel-1 (or ASF HyP3) inputs that read what another form of their product
    reads.

    Products are matched by name (:func:`_product`: a zip by the product inside). A TIFF reads its own
    polarisation (``pol`` when given), a whole product the default one (VV, HH for HH/HV products): the
    same pixels run once, from the most complete form (outputs named after the product); a TIFF of
    another polarisation is another image and runs under its own id (the TIFF's name). Two zips are one
    only with the same files (a product downloaded twice, under two names); two folders, or zips that
    differ, may be edited copies: both stay, and stop on their shared id, for the user to choose.
    """
    from dakd_edge.data.products import file_polarisation, product_key

    groups: dict[str, list[Scene]] = {}
    damaged: dict[int, bool] = {}  # a zip that holds no readable product, found once per scene
    for s in scenes:
        product, damaged[id(s)] = _product(s)
        if product:
            groups.setdefault(product, []).append(s)
    dropped: set[int] = set()
    for group in groups.values():
        if len(group) < 2:
            continue
        forms = {id(s): _form(s.path) for s in group}
        # a whole Sentinel-1 product and its TIFFs may read different pixels; a HyP3 product's folder,
        # zip and *_VV.tif all read that one image
        named = any(product_key(s.path.name) is not None for s in group)
        by_pol = _TIFF in forms.values() and not named
        kept: list[tuple[Scene, str | None]] = []
        # a HyP3 / OPERA product's co-polarised image before its VH / HV (which then does not run beside
        # it: cross-polarised false alarms would merge with the same pass's VV polygons in the layer)
        cross = {id(s): file_polarisation(s.path.name) in ("VH", "HV") for s in group}
        for s in sorted(
            group, key=lambda s: (forms[id(s)], cross[id(s)], damaged[id(s)])
        ):  # damaged zip last
            read = _polarisation(s.path, pol) if by_pol else ""
            first = next((k for k, r in kept if r == read and read is not None
                          and _interchangeable(k.path, forms[id(k)], s.path, forms[id(s)],
                                               damaged[id(k)], damaged[id(s)])), None)  # fmt: skip
            if first is None:
                kept.append((s, read))
                continue
            dropped.add(id(s))
            if notes is not None:
                name = s.path.name + (f" (STAC item {s.id!r})" if "stac_asset" in s.meta else "")
                if by_pol:
                    why = f"reads the same product and polarisation ({read}) as {first.path}"
                elif damaged[id(s)]:
                    name += " (a damaged or truncated zip)"
                    why = f"is named after the same product as {first.path}"
                elif cross[id(s)] and not cross[id(first)]:
                    why = (
                        f"is the cross-polarised image of the product whose co-polarised one runs "
                        f"({first.path}); give it alone to run it"
                    )
                else:
                    why = f"is the same product as {first.path}"
                where = "the .SAFE folder" if forms[id(first)] == _SAFE and not by_pol else first.path.name
                notes.setdefault(first.id, []).append(f"{name} {why}: run once, from {where}")
    return [s for s in scenes if id(s) not in dropped]


def _is_measurement(path: Path) -> bool:
    from dakd_edge.data.sentinel1 import is_sentinel1_product

    return path.suffix.lower() in (".tif", ".tiff") and is_sentinel1_product(path)


def _interchangeable(a: Path, form_a: int, b: Path, form_b: int, damaged_a: bool, damaged_b: bool) -> bool:
    """Whether two inputs of one product (by name) may stand for each other: different forms, TIFFs
    (their polarisation was compared), a damaged zip beside a zip that reads (a cut-short download), or
    zips holding the same files (file names, CRC-32 and sizes, from the zips' directories: no data is
    read)."""
    if form_a != form_b or form_a == _TIFF:
        return True
    if form_a != _ZIP:
        return False
    if damaged_b and not damaged_a:
        return True
    files = _zip_files(a)
    return files is not None and files == _zip_files(b)


def _zip_files(path: Path) -> frozenset[tuple[str, int, int]] | None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return frozenset((PurePosixPath(i.filename).name, i.CRC, i.file_size) for i in z.infolist()
                             if not i.is_dir())  # fmt: skip
    except (OSError, zipfile.BadZipFile):
        return None


def _product(s: Scene) -> tuple[str, bool]:
    """(product name, damaged) of a scene. The name is that of a Sentinel-1 scene's product (a TIFF's
    SAFE folder; a zip's, by the product inside it: :func:`scene_id`), "" for other scenes. Damaged: a
    ``.zip`` that is no readable product (damaged, truncated, empty); it is named by its file
    (``NAME.zip``, as downloads are named) and fails in its own scene unless that product is also given.
    """
    from dakd_edge.data.products import product_key
    from dakd_edge.data.sentinel1 import is_sentinel1_product

    if _is_measurement(s.path):
        return scene_id(s.path.resolve().parent.parent), False
    if is_sentinel1_product(s.path):
        return scene_id(s.path), False
    if (key := product_key(s.path.name)) is not None:  # HyP3 / OPERA: its folder, zip or *_VV.tif
        return safe_id(key), False
    damaged = s.path.suffix.lower() == ".zip" and s.path.is_file()
    return (scene_id(s.path) if damaged else ""), damaged


def _polarisation(path: Path, pol: str | None) -> str | None:
    """The polarisation a worker reads from ``path``; None when the product cannot be opened (it then
    fails in its own scene, with its own message)."""
    from dakd_edge.data.sentinel1 import open_product

    try:
        with open_product(path, pol, noise=False) as p:
            return p.meta.polarisation
    except Exception:
        return None


def _file_key(path: Path) -> Path | tuple[int, int]:
    """One key per file on disk: symlinks resolve to their target, hard links share device and inode."""
    real = path.resolve()
    try:
        st = real.stat()
    except OSError:
        return real
    return (st.st_dev, st.st_ino) if real.is_file() else real


def _expand(p: Path, depth: int, out: Path | None, pol: str | None = None) -> Iterator[Scene]:
    from dakd_edge.data.sentinel1 import is_sentinel1_product
    from dakd_edge.inference.readers import is_rtc_product_folder

    if depth > 8:
        raise InputError(f"{p}: lists nest more than 8 levels deep (a list that names itself?)")
    if not p.exists():
        raise InputError(f"{p}: no such file or directory")
    if is_sentinel1_product(p):
        path = p.parent if p.name.lower() == "manifest.safe" else p
        yield named_scene(path)
    elif is_rtc_product_folder(p):
        yield named_scene(p)
    elif p.is_dir():
        if _is_output(p, out):
            raise InputError(f"{p}: a batch output folder (--out, {OPTIONS} or {MANIFEST}), not scenes")
        found = list(_walk(p, out))
        if not found:
            raise InputError(f"{p}: folder holds no scene (GeoTIFF or Sentinel-1 product)")
        yield from (named_scene(q) for q in found)
    elif p.suffix.lower() in LIST_SUFFIXES:
        yield from _from_list(p, depth, out, pol)
    elif p.suffix.lower() == ".json":
        yield from stac_scenes(p, pol)
    else:
        yield named_scene(p)


def _walk(folder: Path, out: Path | None, seen: set[tuple[int, int]] | None = None) -> Iterator[Path]:
    """Scenes under ``folder``, sorted; a SAFE product is one scene (never descended into).

    An extracted ASF HyP3 RTC product is one scene too (its co-polarised image, not its VH, layover
    or RGB rasters); layers a product's name says are no backscatter (OPERA's mask, static and
    metadata layers, HyP3's layover map beside its VV) are no scenes. Every ``.zip`` is a scene,
    recognised or not: a truncated download must fail loudly in the manifest, not vanish from the
    batch. Each folder is walked once (``seen``: device and inode), so a symbolic link to a parent
    (``ln -s . loop``) cannot walk forever, nor a linked folder run twice.
    """
    from dakd_edge.data.products import auxiliary_layer, is_alos_image_name
    from dakd_edge.data.sentinel1 import is_sentinel1_product
    from dakd_edge.inference.readers import is_rtc_product_folder

    seen = set() if seen is None else seen
    st = folder.stat()
    if (st.st_dev, st.st_ino) in seen:
        return
    seen.add((st.st_dev, st.st_ino))
    for q in sorted(folder.iterdir()):
        if q.name.startswith("."):  # hidden files and our own temporaries
            continue
        if is_sentinel1_product(q) or is_rtc_product_folder(q):  # one scene each, not descended into
            yield q
        elif q.is_dir():
            if not _is_output(q, out):
                yield from _walk(q, out, seen)
        elif auxiliary_layer(q.name) is not None:
            continue
        elif q.suffix.lower() in (*RASTER_SUFFIXES, *CONTAINER_SUFFIXES, ".zip") or is_alos_image_name(
            q.name
        ):
            yield q


def _is_output(folder: Path, out: Path | None) -> bool:
    """The batch's own ``--out`` folder or any batch folder: its class maps would be taken for scenes."""
    return is_batch_folder(folder) or (out is not None and folder.resolve() == out)


def _from_list(p: Path, depth: int, out: Path | None, pol: str | None) -> Iterator[Scene]:
    from dakd_edge.data.gdalnames import is_gdal_name

    try:
        lines = p.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: cannot read the scene list ({e})") from None
    for n, line in enumerate(lines, 1):
        text = _COMMENT.split(line, maxsplit=1)[0].strip()  # "scene#2.tif" is a name, " # x" a comment
        if not text:
            continue
        if is_gdal_name(text):  # a dataset name or virtual path, as given (GDAL resolves it)
            yield named_scene(Path(text))
            continue
        q = Path(text).expanduser()
        q = q if q.is_absolute() else p.parent / q
        if not q.exists():
            raise InputError(f"{p}, line {n}: {text}: no such file or directory")
        yield from _expand(q, depth + 1, out, pol)


def stac_scenes(path: Path, pol: str | None = None) -> list[Scene]:
    """Scenes of a local STAC ItemCollection, Catalog or Collection: one SAR/GeoTIFF asset per item
    (that of polarisation ``pol`` when the item has one: :func:`_item_scene`).

    The item id names the outputs; its datetime (or ``start_datetime``) and ``platform`` fill the
    merged layer's acquisition columns when the scene itself carries no product metadata.
    """
    try:
        import pystac
    except ImportError:
        raise InputError(f"{path}: STAC inputs need pystac ({_hint()})") from None
    from dakd_edge import jsonin

    try:
        doc = jsonin.loads(path.read_text())
    except (OSError, ValueError) as e:  # ValueError: JSONDecodeError, UnicodeDecodeError, nested too deep
        raise InputError(f"{path}: not a STAC JSON file ({' '.join(str(e).split())})") from None
    io = _local_stac_io()
    try:
        if doc.get("type") == "FeatureCollection":
            items = list(pystac.ItemCollection.from_dict(doc, preserve_dict=False))
            for it in items:  # relative hrefs are relative to the collection file
                it.set_self_href(None)
        elif doc.get("type") == "Feature":
            items = [pystac.Item.from_file(str(path), stac_io=io)]
        else:
            cat = pystac.read_file(str(path), stac_io=io)
            items = list(cat.get_items(recursive=True))
    except Exception as e:  # pystac raises many types (STACTypeError, KeyError, ...)
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, InputError):  # pystac wraps the reader's
            cause = cause.__cause__
        if cause is not None:
            raise InputError(f"{path}: {cause}") from None
        raise InputError(
            f"{path}: cannot read STAC ({type(e).__name__}: {' '.join(str(e).split())})"
        ) from None
    if not items:
        raise InputError(f"{path}: STAC document holds no items")
    return [_item_scene(it, path, pol) for it in items]


def _local_stac_io() -> Any:
    """pystac's reader, for local files only: a catalogue's links to http(s), s3, ... are refused
    (never fetched), as remote assets are: batch reads local scenes, and a downloaded catalogue must
    not make it call out (to a cloud metadata address, say) while its links are resolved."""
    from urllib.parse import urlparse

    from pystac.stac_io import DefaultStacIO

    class LocalStacIO(DefaultStacIO):
        def read_text_from_href(self, href: str) -> str:
            scheme = urlparse(href).scheme.lower()
            if scheme not in ("", "file") and not (len(scheme) == 1 and os.name == "nt"):  # C:\\ is a drive
                raise InputError(
                    f"links to {href} (remote STAC documents are not read: download the catalogue)"
                )
            return super().read_text_from_href(href)

    return LocalStacIO()


def _item_scene(item: Any, source: Path, pol: str | None = None) -> Scene:
    """The scene of one item: the asset of the polarisation read (``pol``; else VV, HH, then any),
    else a product / GeoTIFF asset; never a metadata asset (annotation XML, manifest.safe, preview).

    Another polarisation's asset is taken only with ``pol`` (the reader then reads ``pol`` from its
    product): without it a missing ``vv`` must not turn into a VH run. A remote, missing or unusable
    asset gives way to a later local one; when none is left, the error names the first choice's problem.
    """
    from dakd_edge.data.sentinel1 import LOOSE_MEASUREMENT, is_loose_measurement

    assets = item.get_assets()
    pol = pol.upper() if pol else None
    by_pol = {k.upper(): k for k in assets if k.upper() in _POLS}
    want = pol or next((p for p in _POLS if p in by_pol), None)
    keys = [by_pol[want]] if want in by_pol else []
    keys += [k for name in ASSET_KEYS for k in assets if k.lower() == name and _is_image(assets[k], True)]
    keys += [k for k in assets if k not in keys and k.upper() not in _POLS and _is_image(assets[k])]
    keys += [k for k in by_pol.values() if pol and k not in keys]  # their product reads ``pol``
    problems = []
    for key in keys:
        href = assets[key].get_absolute_href() or assets[key].href
        path, problem = _local_href(href, source)
        if path is None:
            problems.append(f"asset {key!r}{problem}")
            continue
        if is_loose_measurement(path):  # its raw DNs, read as a GeoTIFF, would never be calibrated
            problems.append(f"asset {key!r} ({path}) {LOOSE_MEASUREMENT}")
            continue
        if path.suffix.lower() in (*RASTER_SUFFIXES, ".zip") and path.is_file() or _is_s1(path):
            props = item.properties
            start = props.get("start_datetime") or (item.datetime and item.datetime.isoformat())
            meta = {"start_time": start, "platform": props.get("platform"), "stac_asset": key}
            return Scene(safe_id(item.id), path, meta)
        problems.append(f"asset {key!r} ({path}) is neither a Sentinel-1 product nor a GeoTIFF")
    what = f"no {want} asset nor a product" if pol and not problems else "no SAR/GeoTIFF asset"
    raise InputError(
        f"{source}: STAC item {item.id!r}: "
        + (problems[0] if problems else f"{what} (assets: {', '.join(assets) or 'none'})")
    )


_METADATA_ROLES = {"metadata", "thumbnail", "overview"}


def _is_image(asset: Any, keyed: bool = False) -> bool:
    """An asset that may be the scene: not annotation XML, manifest or preview, and (unless ``keyed``:
    its key is one of :data:`ASSET_KEYS`) a raster or zip by its name or media type (remote downloads
    such as CDSE's ``Product`` have no file suffix)."""
    name = PurePosixPath(urlparse(asset.href).path).name.lower()
    if _METADATA_ROLES & set(asset.roles or ()) or name == "manifest.safe" or name.endswith(".xml"):
        return False
    media = (asset.media_type or "").lower()
    return keyed or name.endswith((*RASTER_SUFFIXES, ".zip", ".safe")) or "tiff" in media or "zip" in media


def _is_s1(path: Path) -> bool:
    from dakd_edge.data.sentinel1 import is_sentinel1_product

    return path.name.lower() != "manifest.safe" and is_sentinel1_product(path)


_REMOTE = (
    "is not a local file ({}); only local files are supported: download the data and point the hrefs at it"
)


def _local_href(href: str, source: Path) -> tuple[Path | None, str]:
    """(the existing local file of ``href``, "") or (None, why not): remote, or no such file."""
    u = urlparse(href)
    if u.scheme not in ("", "file") and not re.match(r"^[A-Za-z]$", u.scheme) or href.startswith("/vsi"):
        return None, " " + _REMOTE.format(href)  # http(s), s3, gs, GDAL's /vsis3/, /vsicurl/, ...
    p = Path(unquote(u.path) if u.scheme == "file" else href)
    p = Path(os.path.normpath(p if p.is_absolute() else source.parent / p))
    if not p.exists() and u.scheme != "file" and p != Path(unquote(str(p))):
        p = Path(unquote(str(p)))  # a relative href written as a URI ("my%20scenes/x.tif")
    return (p, "") if p.exists() else (None, f": {p}: no such file or directory")


def _hint() -> str:
    from dakd_edge.extras import install_hint

    return install_hint("cluster")
