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
    """The record's "reproducibility"; None for a record made before there was one; a FreenetError
    naming the problem when this freenet cannot understand it."""
    if "reproducibility" not in record:
        return None
    problem = reproducibility_problem(record["reproducibility"])
    if problem:
        raise FreenetError(f"{path}: the record's reproducibility: {problem}")
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
