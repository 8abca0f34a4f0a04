"""``freenet reproduce FILE``: retrain a model from its own record and check the weights bit for bit."""

import dataclasses


def register(commands):
    parser = commands.add_parser(
        "reproduce", help="retrain a model from its record and check that the weights are bit-identical",
        description="Rebuild the training recipe recorded in a model file, obtain the same data (checked by "
                    "SHA-256: other data is an error, never a silent retrain), train again, and compare the new "
                    "weights with the file's. Exits 0 only when they are bit-identical.")
    parser.add_argument("file", help="a .safetensors model file written by a freenet training command")
    parser.add_argument("--data", metavar="DIR", help="where the recorded data files are, if not where the "
                        "record says (bundled data needs nothing)")
    parser.add_argument("--threads", type=int, default=None, help="threads to train with (the result does not "
                        "depend on it); default: all cores")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args):
    import freenet as fn
    from freenet import provenance, recipes
    from freenet.errors import FreenetError
    from freenet.kernels import settings
    from freenet.validate import FileFormatError, check_regular

    check_regular(args.file, "model file")  # a folder or a FIFO is an error here, not a traceback or a wait
    record, digest = provenance.read_record_and_status(args.file)
    if digest == provenance.RECORD_CHANGED:
        # Before anything acts on the record: a changed one may name other data folders or parameters.
        raise FileFormatError(f"{args.file}: the provenance record does not match its digest: it was changed after "
                              "it was written (tampered or damaged); refusing to retrain from it")
    repro = provenance.recorded_reproducibility(record, args.file)
    _, actual, weights_ok = provenance.check_weights(args.file, record)
    if not weights_ok:
        raise FreenetError(f"{args.file}: its weights (sha256 {actual[:16]}...) are not the ones its record "
                           f"describes ({str(record.get('weights_sha256'))[:16]}...); nothing to reproduce")
    archive = provenance.read_archive(args.file, record)
    if archive is not None:
        provenance.archive_members(archive, f"{args.file}: the embedded source archive")  # a hostile one: suspect
    recipe_info = record["recipe"]  # check_record: an object with a name and params
    try:
        module = recipes.get(recipe_info["name"])
    except FreenetError as e:
        raise FileFormatError(f"{args.file}: {e}") from None
    recipe = _recipe_from(module, recipe_info["params"], args.file)
    if args.data is not None:
        recipe = dataclasses.replace(recipe, data=args.data)
    recorded = (record.get("data") or {}).get("files") or {}
    here = module.data_identity(recipe)["files"]
    if here != recorded:
        differing = sorted(set(recorded) ^ set(here) | {k for k in recorded if k in here and recorded[k] != here[k]})
        raise FreenetError(f"{args.file}: the data here is not the data the model was trained on: "
                           f"{', '.join(differing)} differ (recorded: {recorded}; here: {here})")
    code = provenance.code_identity()
    recorded_code = record.get("code") if isinstance(record.get("code"), dict) else {}
    same_code = code["freenet_source_sha256"] == recorded_code.get("freenet_source_sha256")
    print(f"data verified ({len(here)} files); freenet source "
          + ("is the recorded one" if same_code else "differs from the recorded one (the result may differ)")
          + ("; the record has no digest (older file)" if digest == provenance.RECORD_UNSEALED else ""))
    machine = {**provenance.this_machine(), "freenet_source_sha256": code["freenet_source_sha256"]}
    expected, reasons = provenance.expected_here(record, machine)
    matmul = repro["matmul"] if repro else settings.matmul_path()  # older records: the path in force here
    print(f"recorded class: {repro['class'] + ': ' if repro else ''}{provenance.describe_reproducibility(repro)}\n"
          f"this machine:   {provenance.describe_machine(machine)}; "
          f"NumPy {machine['numpy']}, Numba {machine['numba']}\n"
          f"bitwise match expected here: {expected}" + (f" ({'; '.join(reasons)})" if reasons else "")
          + f"; training with the {matmul} matmul path" + (", as recorded" if repro else ""))
    if args.threads:
        fn.set_num_threads(args.threads)
    previous = settings.set_matmul_path(matmul)
    try:
        result = module.train(recipe, progress=not args.quiet)
    finally:
        settings.set_matmul_path(previous)
    identical = result.sha256 == record["weights_sha256"]
    print(f"retrained weights sha256 {result.sha256}\nrecorded weights sha256 {record['weights_sha256']}")
    if not identical:
        print(provenance.explain_mismatch(record, machine))
    print("bit-identical: reproduced" if identical else "DIFFERENT: not reproduced")
    return 0 if identical else 1


def _recipe_from(module, params, path):
    """The module's Recipe from the record's parameters; the Recipe checks their types and ranges, and
    any problem is a FileFormatError naming the file."""
    from freenet.errors import FreenetError
    from freenet.validate import FileFormatError, preview

    if not isinstance(params, dict):
        raise FileFormatError(f"{path}: the record has no recipe parameters")
    fields = {f.name for f in dataclasses.fields(module.Recipe)}
    unknown = set(params) - fields
    if unknown:
        raise FileFormatError(f"{path}: unknown recipe parameters {preview(sorted(unknown))}")
    for key, value in params.items():
        if value is not None and not isinstance(value, (int, float, str)) or isinstance(value, bool):
            raise FileFormatError(f"{path}: recipe parameter {key}={preview(value)} is not a number or a string")
    try:
        return module.Recipe(**params)
    except FreenetError as e:
        raise FileFormatError(f"{path}: {e}") from None
