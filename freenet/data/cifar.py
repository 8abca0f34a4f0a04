"""CIFAR-10 in its binary format: records of 1 label byte and 3072 pixel bytes (3 planes of 32x32, RGB).

Each batch file holds 10,000 records: the size of a file is checked against that before it is read, so a
huge or sparse file is refused rather than read into memory.
"""

import os

import numpy as np

from freenet.data.dataset import TensorDataset
from freenet.data.files import sha256_file
from freenet.errors import FreenetError
from freenet.validate import check_regular, fail, read_regular

RECORD = 1 + 3 * 32 * 32
MAX_RECORDS = 10_000  # of every batch of the official files
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def read_cifar10_batch(path):
    """(images uint8 of shape (N, 3, 32, 32), labels uint8 of shape (N,)) from one CIFAR-10 .bin file.

    A file that is not a regular file, or not 1 to 10,000 whole records, is a FileFormatError naming it."""
    path = os.fspath(path)
    size = check_regular(path, "CIFAR-10 batch")
    if size == 0 or size % RECORD:
        fail(path, f"size {size} bytes is not a positive multiple of the {RECORD}-byte CIFAR-10 record "
                   "(1 label byte + 3072 pixel bytes)")
    if size > MAX_RECORDS * RECORD:
        fail(path, f"{size // RECORD:,} records, more than the {MAX_RECORDS:,} of a CIFAR-10 batch")
    data = read_regular(path, MAX_RECORDS * RECORD, "CIFAR-10 batch")
    if len(data) != size:
        fail(path, f"changed while being read ({len(data)} bytes, not {size})")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].copy()
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        fail(path, f"record {bad[0]} has label {labels[bad[0]]}, not a CIFAR-10 class (0..9)")
    images = np.ascontiguousarray(records[:, 1:].reshape(-1, 3, 32, 32))
    return images, labels


class CIFAR10(TensorDataset):
    """CIFAR-10 from the binary files in ``root`` (``data_batch_1.bin`` .. ``data_batch_5.bin`` for
    ``train=True``, ``test_batch.bin`` otherwise; the ``cifar-10-batches-bin`` folder of the official
    archive is also searched). No download.

    ``images`` are float32 in [0, 1] of shape (N, 3, 32, 32), ``labels`` int64; ``sha256`` maps each
    file name read to its SHA-256. ``dataset[i]`` is ``(image, label)``.
    """

    classes = CLASSES

    def __init__(self, root, train=True):
        root = os.fspath(root)
        # A wrong folder is a wrong argument (FreenetError); a wrong file in the right one, a FileFormatError.
        if not os.path.isdir(root):
            raise FreenetError(f"{root}: " + ("is a file, not a folder" if os.path.lexists(root) else "no such folder"))
        names = TRAIN_FILES if train else TEST_FILES
        folder = root
        # Whatever has a batch's name counts as there (a FIFO or folder is then refused by name, not passed over).
        if not all(os.path.lexists(os.path.join(root, n)) for n in names):
            nested = os.path.join(root, "cifar-10-batches-bin")
            if all(os.path.lexists(os.path.join(nested, n)) for n in names):
                folder = nested
        missing = [n for n in names if not os.path.lexists(os.path.join(folder, n))]
        if missing:
            raise FreenetError(f"{root}: lacks {', '.join(missing)} (the binary version of CIFAR-10, "
                               "https://www.cs.toronto.edu/~kriz/cifar.html)")
        images, labels, self.sha256 = [], [], {}
        for n in names:
            p = os.path.join(folder, n)
            x, y = read_cifar10_batch(p)
            images.append(x)
            labels.append(y)
            self.sha256[n] = sha256_file(p)
        x = np.concatenate(images)
        self.root, self.train = folder, bool(train)
        super().__init__(np.divide(x, np.float32(255), dtype=np.float32),
                         np.concatenate(labels).astype(np.int64))

    @property
    def images(self):
        return self.arrays[0]

    @property
    def labels(self):
        return self.arrays[1]
