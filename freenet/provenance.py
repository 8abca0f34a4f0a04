"""What a freenet model file says about where it came from: its "corresponding source".

Every training command writes a JSON record into the safetensors metadata of its output (code,
data, recipe, environment, metrics, licence, weights hash) and, by default, the training program
itself: a tar.xz archive of freenet's source and the user's script. The archive is data: nothing in
it is ever imported or run, and extracting it refuses any path that would leave the target folder.
"""

import base64
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import time

import numpy as np

from freenet.errors import FreenetError
from freenet.serialize import load, load_metadata, save, weights_sha256

RECORD_KEY = "freenet.provenance"
SOURCE_KEY = "freenet.source.tar.xz.base64"
MAX_ARCHIVE_FILES = 10000
MAX_ARCHIVE_BYTES = 64 * 1024 * 1024  # unpacked: freenet's source is well under 1 MB

# Licences that meet the Debian Free Software Guidelines (SPDX ids), for weights and for data.
FREE_LICENSES = {
    "GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later", "LGPL-2.1-only",
    "LGPL-2.1-or-later", "LGPL-3.0-only", "LGPL-3.0-or-later", "AGPL-3.0-only", "AGPL-3.0-or-later",
    "MIT", "BSD-2-Clause", "BSD-3-Clause", "Apache-2.0", "MPL-2.0", "ISC", "Zlib", "Artistic-2.0",
    "CC0-1.0", "CC-BY-3.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "ODbL-1.0", "PDDL-1.0",
    "CDLA-Permissive-2.0", "Unlicense",
}


# -- code identity --------------------------------------------------------------------------------------

def _package_files():
    """(archive path, file path) of freenet's source: the package and its kernels, in either install."""
    import freenet
    import freenet.kernels
    roots = [("freenet", freenet.__path__[0]), ("freenet/kernels", freenet.kernels.__path__[0])]
    found = {}
    for prefix, root in roots:
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
            rel = os.path.relpath(folder, root)
            for name in sorted(names):
                if name.endswith(".py") or name in ("README.md",):
                    arcname = "/".join(p for p in (prefix, rel if rel != "." else "", name) if p)
                    found.setdefault(arcname, os.path.join(folder, name))
    return sorted(found.items())


def _repo_root():
    """The source checkout freenet runs from, if any (editable installs)."""
    import freenet
    root = os.path.dirname(os.path.dirname(os.path.abspath(freenet.__file__)))
    return root if os.path.isfile(os.path.join(root, "pyproject.toml")) else None


def _sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _git(root):
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        status = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())} if commit else None


def code_identity(script=None):
    """SHA-256 over freenet's source files (path and content), git facts where there is a checkout,
    and the SHA-256 of the user's training script."""
    h = hashlib.sha256()
    files = _package_files()
    for arcname, path in files:
        h.update(arcname.encode() + b"\0" + _sha256_file(path).encode() + b"\n")
    root = _repo_root()
    identity = {"freenet_source_sha256": h.hexdigest(), "freenet_source_files": len(files),
                "git": _git(root) if root else None}
    if script is not None:
        identity["script"] = {"name": os.path.basename(script), "sha256": _sha256_file(script)}
    return identity


# -- environment ----------------------------------------------------------------------------------------

def isa_level():
    """The x86-64 micro-architecture level (v1..v4) from /proc/cpuinfo flags, or the machine name."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return platform.machine()
    flags = set(flags)
    level = "x86-64"
    for name, needed in (("x86-64-v2", {"sse4_2", "popcnt", "ssse3"}), ("x86-64-v3", {"avx2", "fma", "bmi2"}),
                         ("x86-64-v4", {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"})):
        if not needed <= flags:
            break
        level = name
    return level if flags else platform.machine()


def environment():
    import numba
    import threadpoolctl
    import freenet
    blas = [{k: info.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for info in threadpoolctl.threadpool_info() if info.get("user_api") == "blas"]
    return {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "blas": blas, "platform": platform.platform(), "cpu_isa": isa_level(), "cpu_count": os.cpu_count(),
            "freenet_threads": freenet.get_num_threads()}


# -- the record -----------------------------------------------------------------------------------------

def make_record(*, recipe, params, architecture, data, metrics, license, state_dict, command=None, script=None):
    """The provenance record of a trained model (a JSON-able dict)."""
    import freenet
    return {
        "format": 1,
        "freenet_version": freenet.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "recipe": {"name": recipe, "params": params, "command": command if command is not None else sys.argv},
        "architecture": architecture,
        "code": code_identity(script),
        "data": data,
        "environment": environment(),
        "metrics": metrics,
        "license": license,
        "weights_sha256": weights_sha256(state_dict),
    }


def source_archive(script=None):
    """A tar.xz (bytes) of freenet's source and the user's training script: the training program."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        members = list(_package_files())
        root = _repo_root()
        for name in ("pyproject.toml", "LICENSE", "README.md"):
            if root and os.path.isfile(os.path.join(root, name)):
                members.append((name, os.path.join(root, name)))
        if script is not None:
            members.append((f"script/{os.path.basename(script)}", script))
        for arcname, path in members:
            with open(path, "rb") as f:
                content = f.read()
            info = tarfile.TarInfo(arcname)
            info.size, info.mode, info.mtime = len(content), 0o644, 0  # no timestamps: same source, same bytes
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def save_model(path, state_dict, record, archive=None, metadata=None):
    """Writes the weights with the record (and the training program, if given) in the metadata,
    beside any other ``metadata`` the model's format needs."""
    metadata = {**(metadata or {}), RECORD_KEY: json.dumps(record, sort_keys=True)}
    if archive is not None:
        record["source_archive_sha256"] = hashlib.sha256(archive).hexdigest()
        metadata[RECORD_KEY] = json.dumps(record, sort_keys=True)
        metadata[SOURCE_KEY] = base64.b64encode(archive).decode("ascii")
    save(state_dict, path, metadata=metadata)


# -- reading a model file -------------------------------------------------------------------------------

def read_record(path):
    """The provenance record of a model file; a clear error if there is none or it is not JSON."""
    metadata = load_metadata(path)
    if RECORD_KEY not in metadata:
        raise FreenetError(f"{path}: no freenet provenance record in this file")
    try:
        record = json.loads(metadata[RECORD_KEY])
    except json.JSONDecodeError as e:
        raise FreenetError(f"{path}: the provenance record is not valid JSON ({e})") from None
    if not isinstance(record, dict):
        raise FreenetError(f"{path}: the provenance record is a JSON {type(record).__name__}, not an object")
    return record


def read_archive(path, record=None):
    """The embedded training program (tar.xz bytes), verified against the record; None if absent."""
    metadata = load_metadata(path)
    if SOURCE_KEY not in metadata:
        return None
    try:
        archive = base64.b64decode(metadata[SOURCE_KEY], validate=True)
    except ValueError:
        raise FreenetError(f"{path}: the embedded source archive is not valid base64") from None
    expected = (record or {}).get("source_archive_sha256")
    if expected is not None and hashlib.sha256(archive).hexdigest() != expected:
        raise FreenetError(f"{path}: the embedded source archive does not match its SHA-256 in the record")
    return archive


def archive_members(archive):
    """Names and sizes of the archive's regular files, checked: no links, devices, absolute paths or '..'."""
    try:
        tar = tarfile.open(fileobj=io.BytesIO(archive), mode="r:xz")
        members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise FreenetError(f"source archive: cannot be read ({e})") from None
    if len(members) > MAX_ARCHIVE_FILES:
        raise FreenetError(f"source archive: {len(members)} entries is more than the {MAX_ARCHIVE_FILES} allowed")
    total = 0
    for m in members:
        parts = m.name.replace("\\", "/").split("/")
        if not m.isfile():
            raise FreenetError(f"source archive: '{m.name}' is not a regular file (links and devices are refused)")
        if m.name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise FreenetError(f"source archive: path '{m.name}' would escape the target folder")
        total += m.size
        if total > MAX_ARCHIVE_BYTES:
            raise FreenetError(f"source archive: unpacks to more than {MAX_ARCHIVE_BYTES} bytes")
    return tar, members


def extract_archive(archive, target):
    """Unpacks the training program into ``target`` (files only; nothing is run). Returns the file count."""
    tar, members = archive_members(archive)
    target = os.path.realpath(target)
    os.makedirs(target, exist_ok=True)
    for m in members:
        destination = os.path.realpath(os.path.join(target, m.name))
        if os.path.commonpath([destination, target]) != target:
            raise FreenetError(f"source archive: path '{m.name}' would escape the target folder")
        try:
            content = tar.extractfile(m).read()
        except (tarfile.TarError, EOFError, OSError) as e:
            raise FreenetError(f"source archive: '{m.name}' cannot be read ({e})") from None
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        with open(destination, "wb") as dst:
            dst.write(content)
    return len(members)


def classify(record, archive_ok):
    """Debian's ML policy: ("Free Model" | "ToxicCandy" | "Non-free", reason)."""
    license = record.get("license")
    if license not in FREE_LICENSES:
        return "Non-free", f"the weights' licence {license!r} is not a free (DFSG) licence"
    problems = []
    data = record.get("data") or {}
    if data.get("license") not in FREE_LICENSES:
        problems.append(f"the training data's licence {data.get('license')!r} is not free")
    if not data.get("source"):
        problems.append("the record does not say where to get the training data")
    if not archive_ok:
        problems.append("the training program is not included in the file")
    if problems:
        return "ToxicCandy", f"free licence ({license}) but " + "; ".join(problems)
    return "Free Model", (f"free licence ({license}), free and publicly available training data "
                          f"({data.get('name')}, {data.get('license')}), and the training program is in the file")


def check_weights(path, record):
    """The file's tensors and whether their SHA-256 is the record's."""
    state = load(path)
    actual = weights_sha256(state)
    return state, actual, actual == record.get("weights_sha256")
