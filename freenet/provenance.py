"""What a freenet model file says about where it came from: its "corresponding source".

Every training command writes a JSON record into the safetensors metadata of its output (code,
data, recipe, environment, metrics, licence, weights hash) and, by default, the training program
itself: a tar.xz archive of freenet's source and the user's script. The archive is data: nothing in
it is ever imported or run, and extracting it refuses any path that would leave the target folder.

The record carries its own digest: ``save_model`` stores the SHA-256 of the record's text, exactly as
stored under ``RECORD_KEY`` (UTF-8; freenet writes it as sorted, ASCII-only JSON), as lowercase hex
under the metadata key ``DIGEST_KEY`` beside it. Hashing the stored text rather than a canonical form
of the JSON needs no canonicalisation rules: any change to the text, even one that leaves the JSON
equal, reads as a change. The record in turn holds the SHA-256 of the weights and of the source
archive, so the digest vouches for them too. ``inspect`` reports a record whose digest does not match
(and exits 1); ``reproduce`` refuses it. A file written before the digest existed has no
``DIGEST_KEY``: it reads as "no digest (older file)", not as an error. The digest detects changes
made after writing; anyone can recompute it, so it is no signature.

Everything here reads a model file as hostile input: ``read_record`` checks the record's shape
(``check_record``) so that every reader gets a ``FileFormatError`` naming the file and the field, and
the source archive is inflated up to a bound and unpacked only as plain relative file paths.
"""

import base64
import hashlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import tarfile
import time

import numpy as np

from freenet.serialize import load, load_metadata, save, weights_sha256
from freenet.validate import FileFormatError, decompress, expect, fail, field, parse_json

RECORD_KEY = "freenet.provenance"
DIGEST_KEY = "freenet.provenance.sha256"  # SHA-256 of the text under RECORD_KEY (module docstring)
SOURCE_KEY = "freenet.source.tar.xz.base64"
MAX_ARCHIVE_FILES = 10000
MAX_ARCHIVE_BYTES = 64 * 1024 * 1024  # unpacked: freenet's source is well under 1 MB
MAX_ARCHIVE_TAR = MAX_ARCHIVE_BYTES + 4096 * (MAX_ARCHIVE_FILES + 4)  # the files plus tar's headers and padding
MAX_NAME_BYTES, MAX_PATH_BYTES = 255, 1024  # per path component (NAME_MAX) and in all, in UTF-8
RECORD_VERIFIED, RECORD_UNSEALED, RECORD_CHANGED = "verified", "no digest (older file)", "changed"

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


def _cpuinfo():
    """The first processor's "key: value" lines of /proc/cpuinfo; empty where there is none."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _int_or_none(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def cpu_identity():
    """The CPU model: its name (for people) and vendor, family and model numbers (what OpenBLAS picks
    its kernels by, so what "same CPU model" compares). Fields are None where the system does not say."""
    info = _cpuinfo()
    return {"name": info.get("model name") or platform.processor() or None, "vendor": info.get("vendor_id"),
            "family": _int_or_none(info.get("cpu family")), "model": _int_or_none(info.get("model"))}


def _has_fma():
    """Whether this CPU has AVX2 and FMA (x86-64-v3's arithmetic): /proc/cpuinfo, else LLVM's view of the host."""
    flags = (_cpuinfo().get("flags") or "").split()
    if not flags:
        try:
            import llvmlite.binding
            flags = [name for name, on in llvmlite.binding.get_host_cpu_features().items() if on]
        except (ImportError, RuntimeError):
            return False
    return {"avx2", "fma"} <= set(flags)


def environment():
    import numba
    import threadpoolctl
    import freenet
    blas = [{k: info.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for info in threadpoolctl.threadpool_info() if info.get("user_api") == "blas"]
    return {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "blas": blas, "platform": platform.platform(), "cpu_isa": isa_level(), "cpu": cpu_identity(),
            "cpu_count": os.cpu_count(), "freenet_threads": freenet.get_num_threads()}


# -- reproducibility classes ------------------------------------------------------------------------------
# The record says where its weights can be reproduced bit for bit. freenet's own GEMM and elementwise
# functions give the same bits on every x86-64 CPU with FMA; OpenBLAS picks its kernels (and so its
# order of summation) per CPU model. Only x86-64 with FMA is tested, so any other host is "same-cpu".

X86_64_FMA, SAME_CPU = "x86-64-fma", "same-cpu"
REPRODUCIBILITY_CLASSES = (X86_64_FMA, SAME_CPU)
_X86_64_NAMES = ("x86_64", "amd64", "x64")


def this_machine():
    """What decides whether weights reproduce here: architecture, FMA, CPU model, NumPy and Numba versions."""
    import numba
    arch = platform.machine()
    x86_64 = arch.lower() in _X86_64_NAMES
    return {"arch": arch, "x86_64": x86_64, "fma": x86_64 and _has_fma(), "cpu": cpu_identity(),
            "numpy": np.__version__, "numba": numba.__version__}


def reproducibility(matmul=None, machine=None):
    """The record's "reproducibility": where weights trained with ``matmul`` (default: the path in
    force) on ``machine`` (default: this one) come out the same bit for bit."""
    from freenet.kernels.settings import matmul_path
    matmul = matmul or matmul_path()
    machine = machine or this_machine()
    if matmul == "blas":
        return {"class": SAME_CPU, "matmul": matmul, "cpu": machine["cpu"]}
    if not machine["fma"]:
        return {"class": SAME_CPU, "matmul": matmul, "cpu": machine["cpu"],
                "reason": f"trained on {_arch_text(machine)}: freenet is bitwise-tested on x86-64 with FMA only"}
    return {"class": X86_64_FMA, "matmul": matmul}


def _arch_text(machine):
    if not machine.get("x86_64"):
        return f"{machine.get('arch') or 'an unknown architecture'}, not x86-64"
    return "x86-64 with FMA" if machine.get("fma") else "x86-64 without FMA (AVX2+FMA)"


def _json_type(value):
    names = {str: "string", list: "array", int: "number", float: "number", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def reproducibility_problem(value):
    """What this freenet cannot understand in a record's "reproducibility" value, or None."""
    from freenet.kernels.settings import MATMUL_PATHS
    if not isinstance(value, dict):
        return f"malformed: a JSON {_json_type(value)}, not an object"
    kind, matmul = value.get("class"), value.get("matmul")
    if kind not in REPRODUCIBILITY_CLASSES:
        return f"unknown class {kind!r} (this freenet knows {', '.join(REPRODUCIBILITY_CLASSES)})"
    if matmul not in MATMUL_PATHS:
        return f"unknown matmul path {matmul!r} (this freenet knows {', '.join(MATMUL_PATHS)})"
    if kind == X86_64_FMA and matmul == "blas":
        return f"malformed: class {kind!r} with matmul path 'blas' (OpenBLAS's results depend on the CPU)"
    if "cpu" in value and not isinstance(value["cpu"], dict):
        return f"malformed: its cpu is a JSON {_json_type(value['cpu'])}, not an object"
    return None


def recorded_reproducibility(record, path):
    """The record's "reproducibility"; None for a record made before there was one; a FileFormatError
    naming the problem when this freenet cannot understand it."""
    if "reproducibility" not in record:
        return None
    problem = reproducibility_problem(record["reproducibility"])
    if problem:
        raise FileFormatError(f"{path}: the record's reproducibility: {problem}")
    return record["reproducibility"]


def describe_cpu(cpu):
    cpu = cpu if isinstance(cpu, dict) else {}
    numbers = [str(cpu[k]) if k == "vendor" else f"{k} {cpu[k]}" for k in ("vendor", "family", "model")
               if cpu.get(k) is not None]
    name = cpu.get("name") or "an unnamed CPU"
    return f"{name} ({' '.join(numbers)})" if numbers else name


def describe_reproducibility(repro):
    """One line for people: where the weights reproduce bit for bit."""
    if repro is None:
        return "unknown: made before reproducibility classes"
    if repro["class"] == X86_64_FMA:
        return "bitwise on every x86-64 CPU with FMA (freenet GEMM)"
    how = "OpenBLAS fast path" if repro["matmul"] == "blas" else repro.get("reason") or "freenet GEMM"
    return f"same CPU model only: {describe_cpu(repro.get('cpu'))} ({how})"


def describe_machine(machine):
    return f"{_arch_text(machine)}, {describe_cpu(machine.get('cpu'))}"


def same_cpu_model(a, b):
    """True or False when two CPU descriptions can be compared (vendor, family and model; else the
    names), None when they cannot."""
    a, b = (c if isinstance(c, dict) else {} for c in (a, b))
    keys = ("vendor", "family", "model")
    if all(a.get(k) is not None and b.get(k) is not None for k in keys):
        return all(a[k] == b[k] for k in keys)
    if a.get("name") and b.get("name"):
        return a["name"] == b["name"]
    return None


def _object(record, key):
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def _differences(record, here):
    """Why this machine may give other weights than the record's: (reasons it must differ, reasons it
    may differ), each reason a (short, full) pair of texts. ``here`` is ``this_machine()``, with
    "freenet_source_sha256" when known."""
    repro = record.get("reproducibility")
    must, may = [], []
    recorded_code = _object(record, "code").get("freenet_source_sha256")
    if here.get("freenet_source_sha256") and here["freenet_source_sha256"] != recorded_code:
        may.append(("the freenet source differs",
                    "the freenet source here differs from the recorded one: other code can give other weights; "
                    "the recorded program is in the file (freenet inspect FILE --extract-source DIR)"))
    problem = reproducibility_problem(repro) if "reproducibility" in record else None
    if problem:
        may.append(("the record's class cannot be read", f"the record's reproducibility cannot be read: {problem}"))
    elif repro is None:
        may.append(("the record predates reproducibility classes",
                    "the record was made before reproducibility classes, when freenet multiplied matrices with "
                    "OpenBLAS: such weights reproduce on the training CPU model only, which the record does not "
                    f"name (its CPU level was {_object(record, 'environment').get('cpu_isa')})"))
    elif repro["class"] == X86_64_FMA:
        if not here.get("fma"):
            must.append((f"this machine is {_arch_text(here)}",
                         f"the record's weights are bitwise on x86-64 CPUs with FMA, and this machine is "
                         f"{_arch_text(here)}: freenet's results elsewhere are untested, so a difference here is "
                         "expected, not evidence of tampering"))
    else:
        same = same_cpu_model(repro.get("cpu"), here.get("cpu"))
        if same is not True:
            how = ("was trained on the OpenBLAS fast path" if repro["matmul"] == "blas"
                   else f"was trained on an untested machine ({repro.get('reason') or 'same-cpu'})")
            named = same_cpu_model(repro.get("cpu"), repro.get("cpu")) is not None
            target = describe_cpu(repro["cpu"]) if named else "its training CPU model, which the record does not name"
            this_cpu = (f"this CPU is {describe_cpu(here.get('cpu'))}" if same is False
                        else "this CPU's model is unknown" if named else "this CPU cannot be compared with it")
            where = "another CPU model" if same is False else "a CPU model not comparable with this one"
            must.append((("trained on the OpenBLAS fast path" if repro["matmul"] == "blas"
                          else "trained on an untested machine") + f", on {where}",
                         f"the model {how} and is only reproducible on {target}; "
                         f"{this_cpu}, so a difference here is expected, not evidence of tampering"))
    env = _object(record, "environment")
    for name, label in (("numpy", "NumPy"), ("numba", "Numba")):
        if env.get(name) is not None and env.get(name) != here.get(name):
            may.append((f"{label} {here.get(name)} here, {env.get(name)} recorded",
                        f"{label} is {here.get(name)} here and was {env.get(name)} for the record: the guarantee "
                        "holds for the same package versions"))
    return must, may


def expected_here(record, here):
    """("yes" | "no" | "not guaranteed", short reasons): whether retraining here should give the record's bits."""
    must, may = _differences(record, here)
    verdict = "no" if must else "not guaranteed" if may else "yes"
    return verdict, [short for short, _ in must + may]


def explain_mismatch(record, here):
    """Why retrained weights differ from the record's: text for the user of ``freenet reproduce``."""
    must, may = _differences(record, here)
    if not must + may:
        return ("Same code, data, recipe and package versions, on a machine the record's class covers: the "
                "weights should have matched. Either the record does not describe how these weights were made, "
                "or this is a freenet bug (please report it with the output of freenet inspect FILE --json).")
    return "Why they may differ:\n" + "\n".join(f"  - {full}" for _, full in must + may)


def training_notice():
    """One line for training commands when the weights will reproduce on this CPU model only, else None."""
    repro = reproducibility()
    if repro["class"] == X86_64_FMA:
        return None
    if repro["matmul"] == "blas":
        return (f"FREENET_MATMUL=blas (OpenBLAS fast path): the weights will be reproducible on this CPU model "
                f"only, {describe_cpu(repro['cpu'])}")
    return f"this machine is {_arch_text(this_machine())}: the weights will be reproducible on this CPU model only"


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
        "reproducibility": reproducibility(),
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
    beside any other ``metadata`` the model's format needs. The record is sealed with its digest."""
    metadata = dict(metadata or {})
    if archive is not None:
        record["source_archive_sha256"] = hashlib.sha256(archive).hexdigest()
        metadata[SOURCE_KEY] = base64.b64encode(archive).decode("ascii")
    metadata[RECORD_KEY] = json.dumps(record, sort_keys=True)
    seal_record(metadata)
    save(state_dict, path, metadata=metadata)


def _sha256_text(text):
    # surrogatepass: a hostile file's text may hold a lone surrogate; it must hash (and mismatch), not raise
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def seal_record(metadata):
    """Stores the digest of the record text in ``metadata`` (a model file's metadata dict) under
    ``DIGEST_KEY``; for writers, and for tools that change a record on purpose."""
    metadata[DIGEST_KEY] = _sha256_text(metadata[RECORD_KEY])
    return metadata


def record_digest_status(metadata):
    """RECORD_VERIFIED, RECORD_UNSEALED (a file from before record digests) or RECORD_CHANGED for the
    metadata of a model file that has a record."""
    if DIGEST_KEY not in metadata:
        return RECORD_UNSEALED
    return RECORD_VERIFIED if metadata[DIGEST_KEY] == _sha256_text(metadata[RECORD_KEY]) else RECORD_CHANGED


# -- reading a model file -------------------------------------------------------------------------------

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _sha256_field(mapping, key, where, required=False):
    value = field(mapping, key, str, where, **({} if required else {"default": None}))
    if value is not None and not _SHA256.fullmatch(value):
        fail(f"{where}: {key}", f"must be a SHA-256 in lowercase hex, not {value[:80]!r}")
    return value


def _optional(mapping, where, kinds):
    """Each of ``kinds`` (key -> type) that ``mapping`` has is of that type or null."""
    for key, kind in kinds.items():
        field(mapping, key, kind, where, default=None, optional=True)


def check_record(record, where):
    """Checks the shape of a provenance record (``where`` names it in errors, e.g. "FILE: the provenance
    record"): the sections every reader uses are objects, the fields they read have the types they
    expect, and the digests are SHA-256 hex. Unknown keys are allowed (a newer freenet may write more);
    the "reproducibility" value is left to ``reproducibility_problem``, which inspect shows and reproduce
    refuses. Recipe parameters are checked by the recipe's own ``Recipe``."""
    if not isinstance(record, dict):
        fail(where, f"is a JSON {_json_type(record)}, not an object")
    field(record, "format", int, where, lo=1, default=None)
    _optional(record, where, {"freenet_version": str, "created": str})
    _sha256_field(record, "weights_sha256", where, required=True)
    _sha256_field(record, "source_archive_sha256", where)
    field(record, "license", str, where)

    recipe = field(record, "recipe", dict, where)
    w = f"{where}: recipe"
    field(recipe, "name", str, w)
    field(recipe, "params", dict, w)
    field(recipe, "command", list, w, default=None, optional=True)

    architecture = field(record, "architecture", dict, where)
    _optional(architecture, f"{where}: architecture", {"recipe": str, "description": str, "net": dict})

    code = field(record, "code", dict, where)
    w = f"{where}: code"
    _optional(code, w, {"freenet_source_sha256": str, "git": dict, "script": dict})
    field(code, "freenet_source_files", int, w, lo=0, default=None, optional=True)
    if isinstance(code.get("git"), dict):
        _optional(code["git"], f"{w}: git", {"commit": str, "dirty": bool})

    data = field(record, "data", dict, where)
    w = f"{where}: data"
    _optional(data, w, {"name": str, "license": str, "source": str, "preprocessing": str, "split": str,
                        "attribution": str, "bundled": bool})
    for name, digest in (field(data, "files", dict, w, default=None, optional=True) or {}).items():
        expect(digest, str, f"{w}: files: {name[:80]}")

    env = field(record, "environment", dict, where)
    w = f"{where}: environment"
    _optional(env, w, {"python": str, "numpy": str, "numba": str, "platform": str, "cpu_isa": str, "cpu": dict,
                       "blas": list})
    for key in ("freenet_threads", "cpu_count"):
        field(env, key, int, w, lo=0, default=None, optional=True)
    if isinstance(env.get("cpu"), dict):
        _optional(env["cpu"], f"{w}: cpu", {"name": str, "vendor": str, "family": int, "model": int})

    field(record, "metrics", dict, where)
    return record


def read_record_and_status(path):
    """(the provenance record of a model file, checked by ``check_record``; its digest status:
    RECORD_VERIFIED, RECORD_UNSEALED or RECORD_CHANGED). A FileFormatError naming the file and the
    field if there is no record or it is not one."""
    metadata = load_metadata(path)
    if RECORD_KEY not in metadata:
        raise FileFormatError(f"{path}: no freenet provenance record in this file")
    where = f"{path}: the provenance record"
    try:
        record = parse_json(metadata[RECORD_KEY], where)
    except FileFormatError:
        raise
    except ValueError as e:  # an integer of over 4,300 digits: the json module raises a plain ValueError
        raise FileFormatError(f"{where}: not valid JSON ({e})") from None
    return check_record(record, where), record_digest_status(metadata)


def read_record(path):
    """The provenance record of a model file, checked (``read_record_and_status`` also says whether the
    record is the one that was written)."""
    return read_record_and_status(path)[0]


def read_archive(path, record=None):
    """The embedded training program (tar.xz bytes), verified against the record; None if absent."""
    metadata = load_metadata(path)
    if SOURCE_KEY not in metadata:
        return None
    try:
        archive = base64.b64decode(metadata[SOURCE_KEY], validate=True)
    except ValueError:
        raise FileFormatError(f"{path}: the embedded source archive is not valid base64") from None
    expected = (record or {}).get("source_archive_sha256")
    if expected is not None and hashlib.sha256(archive).hexdigest() != expected:
        raise FileFormatError(f"{path}: the embedded source archive does not match its SHA-256 in the record")
    return archive


def _member_problem(name, seen_files, seen_folders):
    """Why the tar member ``name`` is not a plain relative file path that can be written beside the
    others, or None. Refused: an absolute path or a drive, '..', empty or '.' components (so '', '.',
    'a//b', 'a/' and './a'), a backslash, a NUL, names too long for a file system, a name twice, and
    a name that is a file in one member and a folder in another."""
    parts = name.split("/")
    if name.startswith(("/", "\\")) or ".." in parts or ".." in name.split("\\") or ":" in parts[0]:
        return "would escape the target folder"
    if any(p in ("", ".") for p in parts):
        return "is not a plain relative file path (an empty or '.' part)"
    if "\\" in name or "\0" in name:
        return "has a backslash or a NUL in it (not a portable file name)"
    try:
        os.fsencode(name)  # what opening it will do: a name this system cannot spell is refused here
    except UnicodeError:
        return "is not a file name this system can write"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES or any(
            len(p.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for p in parts):
        return f"is too long (at most {MAX_NAME_BYTES} bytes a part, {MAX_PATH_BYTES} in all)"
    if name in seen_files:
        return "appears twice"
    if name in seen_folders:
        return "is a file and also a folder of other members"
    folders = ["/".join(parts[:i]) for i in range(1, len(parts))]
    if any(f in seen_files for f in folders):
        return "is inside a folder that is also a file of the archive"
    seen_files.add(name)
    seen_folders.update(folders)
    return None


def archive_members(archive, where="source archive"):
    """(the tar, its members) of a tar.xz archive, checked: regular files only (no links, devices or
    folders), each a plain relative path (``_member_problem``), at most MAX_ARCHIVE_FILES of them and
    MAX_ARCHIVE_BYTES in all. The xz stream is inflated first, up to a bound, so that neither a corrupt
    stream nor a compression bomb gets past here."""
    try:
        tar_bytes = decompress(archive, "xz", MAX_ARCHIVE_TAR, f"{where}: cannot be read")
    except MemoryError:  # an xz header may ask for a 4 GiB dictionary: refused where memory is limited
        raise FileFormatError(f"{where}: cannot be read (its xz stream asks for more memory than there is)") from None
    try:
        tar = tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:")
        members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError, ValueError, OverflowError) as e:  # UnicodeError is a ValueError
        raise FileFormatError(f"{where}: cannot be read ({e})") from None
    if len(members) > MAX_ARCHIVE_FILES:
        raise FileFormatError(f"{where}: {len(members)} entries is more than the {MAX_ARCHIVE_FILES} allowed")
    total, files, folders = 0, set(), set()
    for m in members:
        shown = m.name[:80] + ("..." if len(m.name) > 80 else "")
        if not m.isfile():
            raise FileFormatError(f"{where}: '{shown}' is not a regular file (links, devices and folders are refused)")
        problem = _member_problem(m.name, files, folders)
        if problem:
            raise FileFormatError(f"{where}: path '{shown}' {problem}")
        total += m.size
        if total > MAX_ARCHIVE_BYTES:
            raise FileFormatError(f"{where}: unpacks to more than {MAX_ARCHIVE_BYTES} bytes")
    return tar, members


def extract_archive(archive, target, where="source archive"):
    """Unpacks the training program into ``target`` (files only; nothing is run). Returns the file count.

    Every member is checked and read before anything is written (``archive_members``); each file is
    written only at a path inside ``target`` once links are resolved, and never through a link."""
    tar, members = archive_members(archive, where)
    contents = []
    for m in members:
        try:
            content = tar.extractfile(m).read()
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            raise FileFormatError(f"{where}: '{m.name[:80]}' cannot be read ({e})") from None
        if len(content) != m.size:
            raise FileFormatError(f"{where}: '{m.name[:80]}' is truncated")
        contents.append((m.name, content))
    target = os.path.realpath(target)
    try:
        os.makedirs(target, exist_ok=True)
        for name, content in contents:
            destination = os.path.realpath(os.path.join(target, name))
            if os.path.commonpath([destination, target]) != target or destination == target:
                raise FileFormatError(f"{where}: path '{name[:80]}' would escape the target folder")
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
            with os.fdopen(os.open(destination, flags, 0o644), "wb") as dst:
                dst.write(content)
    except OSError as e:  # the target is a file, is not writable, or holds a file where a folder must go
        raise FileFormatError(f"{target}: cannot unpack the source archive there ({e.strerror or e}"
                              f"{f': {e.filename}' if e.filename else ''})") from None
    return len(contents)


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
    """The file's tensors and whether their SHA-256 is the record's (a tensor holding NaN or infinity
    is a FileFormatError: trained weights are finite)."""
    state = load(path)
    actual = weights_sha256(state)
    return state, actual, actual == record.get("weights_sha256")
