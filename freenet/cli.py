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
    try:
        return args.run(args)
    except FreenetError as e:
        print(f"freenet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("freenet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
