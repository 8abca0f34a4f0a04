"""Argument types and output-path checks shared by the subcommands.

Outputs are checked before the work (``check_output``, ``check_folder``), so that a bad path is a
clean error in a second rather than a traceback after an hour of training; and written after it with
``write_output``, which keeps the result somewhere (and says where) if the path fails even so.
"""

import argparse
import os
import sys
import tempfile

from freenet.errors import FreenetError


def _int_at_least(text, minimum):
    value = int(text)
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def positive_int(text):
    return _int_at_least(text, 1)


def non_negative_int(text):
    return _int_at_least(text, 0)


def _writable_folder(folder, path, what):
    """``folder`` (where ``path`` goes) exists, is a folder, and takes a new file: tried, as permissions,
    read-only mounts and running as root make anything less a guess."""
    if not os.path.exists(folder):
        raise FreenetError(f"{path}: the folder {folder} does not exist (for the {what})")
    if not os.path.isdir(folder):
        raise FreenetError(f"{path}: {folder} is not a folder (for the {what})")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise FreenetError(f"{path}: cannot create files in the folder {folder} ({e.strerror or e}) "
                           f"(for the {what})") from None


def check_output(path, what="output"):
    """Before the work: the file ``path`` can be written. Its folder exists and takes files, and ``path`` is
    not a folder, nor a FIFO or device (outputs are written atomically: a new file renamed over the path).
    A FreenetError says what is wrong."""
    if not path:
        raise FreenetError(f"an empty file name for the {what}")
    if os.path.isdir(path):
        raise FreenetError(f"{path}: is a folder; give a file name for the {what}")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise FreenetError(f"{path}: is not a regular file (a pipe, a device or a broken link); the {what} is "
                           "written as a new file in its place")
    _writable_folder(os.path.dirname(os.path.abspath(path)), path, what)


def check_folder(path, what="output folder"):
    """Before the work: the folder ``path`` is there and takes files, or can be made (the nearest folder
    above it that exists takes new ones). A FreenetError says what is wrong."""
    if not path:
        raise FreenetError(f"an empty folder name for the {what}")
    path = os.path.abspath(path)
    existing = path
    while not os.path.exists(existing):  # the root always exists
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "is a file" if existing == path else f"is under {existing}, which is a file"
        raise FreenetError(f"{path}: {where}, not a folder (for the {what})")
    _writable_folder(existing, path, what)


def _rescue_path(folder, path):
    """A new, unused file name in ``folder`` for what should have gone to ``path``."""
    stem, ext = os.path.splitext(os.path.basename(path) or "output")
    fd, rescue = tempfile.mkstemp(prefix=f"{stem}-kept-", suffix=ext, dir=folder)
    os.close(fd)
    return rescue


def write_output(path, what, write):
    """Writes an output after the work with ``write(p)``, which writes it atomically to ``p``; returns the
    path written. If ``path`` fails even so (a full disk, a folder that went away), the result goes to a
    new file in the current folder or else the temporary folder, and a ``freenet: error:`` line says so:
    finished work is not lost to a bad path. The caller should then end with a non-zero status. If no
    place takes it, that is a FreenetError."""
    try:
        write(path)
        return path
    except OSError as e:
        problem = e.strerror or str(e)
    tried = []
    for folder in dict.fromkeys([os.getcwd(), tempfile.gettempdir()]):
        rescue = None
        try:
            rescue = _rescue_path(folder, path)
            write(rescue)
        except OSError:
            if rescue is not None and os.path.exists(rescue):
                os.remove(rescue)
            tried.append(folder)
            continue
        print(f"freenet: error: {path}: cannot write the {what} ({problem}); it is kept in {rescue} instead",
              file=sys.stderr, flush=True)
        return rescue
    raise FreenetError(f"{path}: cannot write the {what} ({problem}), nor keep it in {' or '.join(tried)}; "
                       "it is lost")


def write_file_output(path, what, data):
    """``write_output`` of ``data`` (bytes), written with ``freenet.serialize.atomic_write``."""
    from freenet import serialize

    return write_output(path, what, lambda p: serialize.atomic_write(p, data))
