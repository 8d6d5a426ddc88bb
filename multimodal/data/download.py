"""Download and unpack a data set archive: streamed, with a progress bar, checksum-verified,
unpacked safely (no path escapes the target folder), and atomic (a half-done download or
unpack never looks like a data set).
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

# The archive the Recipes5k authors link from http://www.ub.edu/cvub/recipes5k/ .
RECIPES5K_URL = "https://www.dropbox.com/s/i1hvs96mnahozq0/Recipes5k.zip?dl=1"
# Not pinned: it could not be fetched from an offline machine to be measured. Pass the demo's
# --sha256 to pin it; the hash of what was downloaded is always written beside the data set.
RECIPES5K_SHA256: str | None = None


class DownloadError(RuntimeError):
    pass


def download(url: str, target: Path, sha256: str | None = None, progress: bool = True) -> str:
    """Stream ``url`` to ``target``; returns the archive's sha256 (checked if given)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=f"downloading {target.name}",
                disable=not progress,
            ) as bar:
                while block := response.read(1 << 16):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise DownloadError(f"cannot download {url}: {getattr(err, 'reason', err)}") from None
    actual = digest.hexdigest()
    if sha256 and actual != sha256.lower():
        partial.unlink(missing_ok=True)
        raise DownloadError(
            f"checksum mismatch for {url}: expected {sha256}, got {actual}; nothing was kept"
        )
    partial.replace(target)
    return actual


def unpack(archive: Path, target: Path) -> Path:
    """Unpack a .zip or .tar(.gz) into ``target``, refusing members that escape it."""
    staging = target.with_name(target.name + ".unpacking")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    root = staging.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            for name in bundle.namelist():
                _check_inside(root, name)
            bundle.extractall(staging)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as bundle:
            bundle.extractall(staging, filter="data")  # refuses escapes and links out
    else:
        shutil.rmtree(staging)
        raise DownloadError(f"{archive} is neither a zip nor a tar archive")
    shutil.rmtree(target, ignore_errors=True)
    staging.replace(target)
    return target


def _check_inside(root: Path, name: str) -> None:
    if not (root / name).resolve().is_relative_to(root):
        raise DownloadError(f"archive member {name!r} would be written outside the target")


def fetch_dataset(
    url: str,
    folder: Path,
    find_root,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Download ``url`` into ``folder`` and unpack it; ``find_root(unpacked)`` locates the data
    set inside (archives often wrap it in a folder). Returns the data set's root."""
    folder = Path(folder)
    archive = folder.with_name(folder.name + ".archive")
    actual = download(url, archive, sha256, progress)
    unpacked = unpack(archive, folder)
    archive.unlink()
    (folder / "SHA256").write_text(f"{actual}  {url}\n")
    root = find_root(unpacked)
    if root is None:
        raise DownloadError(f"the archive from {url} does not hold the expected data set layout")
    return root
