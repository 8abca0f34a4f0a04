"""``freenet inspect FILE``: what a model file says about its origin, and its Debian ML-policy class."""

import json
import os


def register(commands):
    parser = commands.add_parser(
        "inspect", help="show a model file's provenance and whether it is a free model",
        description="Show what a freenet model file records about how it was made (recipe, code, data, "
                    "environment, metrics, licence), check its weights and embedded training program against "
                    "the record, and classify it under Debian's ML policy: Free Model, ToxicCandy or Non-free. "
                    "Nothing in the file is ever run.")
    parser.add_argument("file", help="a .safetensors model file written by a freenet training command")
    parser.add_argument("--json", action="store_true", help="print the record and the verdict as JSON")
    parser.add_argument("--extract-source", metavar="DIR",
                        help="also unpack the embedded training program into DIR (files only, nothing is run)")
    parser.set_defaults(run=run)


def inspect_file(path):
    """The record, the checks on the file, and the verdict, as one dict. A file that is not a model file
    with a well-formed record is a FileFormatError naming it; a record changed since it was written is
    reported (``checks["record_digest"]``), not raised, so that it can be seen."""
    from freenet import provenance
    from freenet.validate import check_regular

    check_regular(path, "model file")  # a folder or a FIFO is an error here, not a traceback or a wait
    record, digest = provenance.read_record_and_status(path)
    state, actual, weights_ok = provenance.check_weights(path, record)
    archive = provenance.read_archive(path, record)
    files = None
    if archive is not None:
        _, members = provenance.archive_members(archive, f"{path}: the embedded source archive")
        files = len(members)
    verdict, reason = provenance.classify(record, archive is not None)
    # Shown, not raised: the rest of the file is worth seeing, and a newer freenet may know more classes.
    problem = provenance.reproducibility_problem(record["reproducibility"]) if "reproducibility" in record else None
    reproducible = problem or provenance.describe_reproducibility(record.get("reproducibility"))
    return {"file": os.fspath(path), "record": record,
            "checks": {"record_digest": digest, "record_unchanged": digest != provenance.RECORD_CHANGED,
                       "weights_sha256": actual, "weights_match_record": weights_ok,
                       "tensors": len(state), "parameters": int(sum(t.numel() for t in state.values())),
                       "source_archive_bytes": None if archive is None else len(archive),
                       "source_archive_files": files, "reproducible": reproducible,
                       "reproducibility_understood": problem is None},
            "verdict": verdict, "reason": reason}


def run(args):
    from freenet import provenance

    report = inspect_file(args.file)
    if args.extract_source:
        archive = provenance.read_archive(args.file, report["record"])
        if archive is None:
            from freenet.validate import FileFormatError
            raise FileFormatError(f"{args.file}: no training program is embedded in this file")
        count = provenance.extract_archive(archive, args.extract_source, f"{args.file}: the embedded source archive")
        report["extracted"] = {"folder": args.extract_source, "files": count}
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(_readable(report))
    checks = report["checks"]
    return 0 if checks["weights_match_record"] and checks["record_unchanged"] else 1


def _digest_line(status):
    from freenet import provenance

    return {provenance.RECORD_VERIFIED: "matches its digest (unchanged since it was written)",
            provenance.RECORD_UNSEALED: "no digest (older file): changes to the record cannot be detected",
            provenance.RECORD_CHANGED: "DOES NOT match its digest: the record was changed after it was written "
                                       "(tampered or damaged), so nothing it says can be trusted"}[status]


def _readable(report):
    from freenet import provenance

    r, c = report["record"], report["checks"]
    recipe, code, data, env, metrics = (r.get(k) or {} for k in ("recipe", "code", "data", "environment", "metrics"))
    git = code.get("git") or {}
    lines = [
        f"{report['file']}",
        f"  record       {_digest_line(c['record_digest'])}",
        f"  weights      {c['tensors']} tensors, {c['parameters']:,} parameters, sha256 {c['weights_sha256'][:16]}... "
        + ("(matches the record)" if c["weights_match_record"] else "(DOES NOT match the record: the weights "
                                                                     "were changed after training)"),
        f"  licence      {r.get('license')}",
        f"  trained by   freenet {r.get('freenet_version')}, recipe '{recipe.get('name')}' on {r.get('created')}",
        "  recipe       " + ", ".join(f"{k}={v}" for k, v in (recipe.get("params") or {}).items()),
        f"  command      {' '.join(map(str, recipe.get('command') or []))}",
        f"  architecture {(r.get('architecture') or {}).get('description')}",
        f"  code         freenet source sha256 {str(code.get('freenet_source_sha256'))[:16]}... "
        f"({code.get('freenet_source_files')} files)"
        + (f", git {git.get('commit', '')[:12]}{' (dirty)' if git.get('dirty') else ''}" if git else ""),
        f"  data         {data.get('name')}, {data.get('license')}; get it: {data.get('source')}",
    ]
    for name, digest in (data.get("files") or {}).items():
        lines.append(f"               {name} sha256 {digest}")
    lines += [
        f"  preprocess   {data.get('preprocessing')}",
        f"  environment  Python {env.get('python')}, NumPy {env.get('numpy')}, Numba {env.get('numba')}, "
        f"{env.get('cpu_isa')}" + (f" ({provenance.describe_cpu(env['cpu'])})" if env.get("cpu") else "")
        + f", {env.get('freenet_threads')} threads",
        f"  reproducible {c['reproducible']}",
        "  metrics      " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in metrics.items() if k != "history"),
        "  program      " + (f"embedded: tar.xz, {c['source_archive_files']} files, "
                             f"{c['source_archive_bytes']:,} bytes (verified)" if c["source_archive_bytes"]
                             else "not embedded"),
        f"verdict: {report['verdict']}: {report['reason']}",
    ]
    if "extracted" in report:
        lines.append(f"extracted {report['extracted']['files']} files into {report['extracted']['folder']}")
    return "\n".join(lines)
