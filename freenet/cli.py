"""The ``freenet`` command. Each subcommand lives in ``freenet/commands/`` and registers itself here."""

import argparse
import importlib
import sys

COMMANDS = ("train", "inspect", "reproduce", "go", "bench", "gap")  # modules in freenet/commands, in the order --help lists them


def _parser():
    from freenet import __version__

    parser = argparse.ArgumentParser(prog="freenet", description="Deep learning on free hardware: train and "
                                     "run neural networks on a plain CPU.")
    parser.add_argument("--version", action="version", version=f"freenet {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for name in COMMANDS:
        importlib.import_module(f"freenet.commands.{name}").register(commands)
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    from freenet.errors import FreenetError
    from freenet.validate import FileFormatError
    try:
        return args.run(args)
    except FreenetError as e:
        print(f"freenet: error: {e}", file=sys.stderr)
        code = 1 if isinstance(e, FileFormatError) else 2  # a bad file (1), or bad arguments (2, as argparse)
        _end_job(code)
        return code
    except KeyboardInterrupt:
        print("freenet: interrupted", file=sys.stderr)
        _end_job(130)
        return 130
    except Exception:  # (not SystemExit: a command that exits on purpose must not end the others)
        _end_job(1, traceback=True)
        raise


def _end_job(code, traceback=False):
    """Under MPI, one rank's failure ends the job: the others would wait for it forever."""
    from freenet import distributed

    world = distributed.current_world()  # None unless this process joined an MPI job (GTP children do not)
    if world is not None and world.size > 1:
        if traceback:
            import traceback as tb
            tb.print_exc()
        print(f"freenet: error: rank {world.rank} failed; ending all {world.size} processes", file=sys.stderr)
        sys.stderr.flush()
        world.abort(code)


if __name__ == "__main__":
    sys.exit(main())
