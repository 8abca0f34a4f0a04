"""MNIST: the bundled 5,000-image sample, or the official files in a folder (optionally downloaded)."""

import os

import numpy as np

from freenet.errors import FreenetError
from freenet.data import files
from freenet.data.dataset import TensorDataset
from freenet.data.idx import read_idx
from freenet.validate import fail

BUNDLED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist5k")
BUNDLED = {"images-idx3-ubyte.gz": "35c4442b3738be6b58df4ff21f19341f0368e1c3d24840252fb3ff06ba646387",
           "labels-idx1-ubyte.gz": "abdbe68beb8b8e1983d8086fdcb07e198f851fb0c1af91276c18f154ef0b67d8"}
BUNDLED_TEST_PER_CLASS = 100
# The most images one file may hold: more than MNIST's 70,000 or EMNIST Digits' 240,000, few enough that the
# header of a bomb or a sparse file cannot make the reader allocate gigabytes.
MAX_IMAGES = 300_000

MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
           "https://storage.googleapis.com/cvdf-datasets/mnist/")
# name -> (size in bytes, SHA-256) of the official gzip files.
OFFICIAL = {
    "train-images-idx3-ubyte.gz": (9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels-idx1-ubyte.gz": (28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte.gz": (1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte.gz": (4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}


def _read(images_path, labels_path):
    """(images, labels) from a pair of IDX files, checked: uint8 images of (N, 28, 28), N > 0, N digit labels."""
    images = read_idx(images_path, max_bytes=MAX_IMAGES * 28 * 28)
    labels = read_idx(labels_path, max_bytes=MAX_IMAGES)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        fail(images_path, f"MNIST images must be uint8 of shape (N, 28, 28), got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        fail(labels_path, f"MNIST labels must be uint8 of shape (N,), got {labels.dtype} {labels.shape}")
    if len(images) == 0:  # nothing to train on, and a test accuracy of 0 / 0
        fail(images_path, "holds no images")
    if len(images) != len(labels):
        fail(labels_path, f"{len(images)} images but {len(labels)} labels (the images are in {images_path})")
    if labels.max() > 9:
        fail(labels_path, f"label {labels.max()} is not a digit (0..9)")
    return images, labels


def bundled_split(labels, test_per_class=BUNDLED_TEST_PER_CLASS):
    """(train indices, test indices) of the bundled sample: the last ``test_per_class`` examples of each
    digit, in file order, are the test part; all the others are the train part. Both stay in file order."""
    test = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        test[np.flatnonzero(labels == digit)[-test_per_class:]] = True
    return np.flatnonzero(~test), np.flatnonzero(test)


def _bundled(train):
    digests = {}
    for name, expected in BUNDLED.items():
        path = os.path.join(BUNDLED_DIR, name)
        if not os.path.isfile(path):
            raise FreenetError(f"MNIST: the bundled sample is missing {path} (a broken install?)")
        digests[name] = files.sha256_file(path)
        if digests[name] != expected:
            raise FreenetError(f"MNIST: bundled {path} has SHA-256 {digests[name]}, expected {expected} "
                               "(a corrupted install?)")
    images, labels = _read(os.path.join(BUNDLED_DIR, "images-idx3-ubyte.gz"),
                           os.path.join(BUNDLED_DIR, "labels-idx1-ubyte.gz"))
    keep = bundled_split(labels)[0 if train else 1]
    return images[keep], labels[keep], digests


def download_file(root, name):
    """Fetches the official ``name`` (a .gz from ``OFFICIAL``) into ``root``, trying each mirror, and checks
    its size and SHA-256 before it takes its final name. Returns the path."""
    size, digest = OFFICIAL[name]
    target = os.path.join(root, name)
    partial = target + ".part"
    failures = []
    for mirror in MIRRORS:
        url = mirror + name
        try:
            files.fetch(url, partial, max_bytes=size)
            got_size, got = os.path.getsize(partial), files.sha256_file(partial)
            if (got_size, got) == (size, digest):
                os.replace(partial, target)
                return target
            failures.append(f"{url}: got {got_size} bytes with SHA-256 {got}, expected {size} bytes with {digest}")
        except OSError as e:
            failures.append(f"{url}: {e}")
        finally:
            if os.path.exists(partial):
                os.remove(partial)
    raise FreenetError(f"MNIST: could not download {name}: " + "; ".join(failures))


def _official(root, train, download_missing):
    # A wrong folder is a wrong argument (FreenetError); a wrong file in the right one, a FileFormatError.
    if os.path.lexists(root) and not os.path.isdir(root):
        raise FreenetError(f"{root}: is a file, not a folder (--data names the folder that holds MNIST's files)")
    if not download_missing and not os.path.isdir(root):
        raise FreenetError(f"{root}: no such folder (it should hold MNIST's train-* and t10k-* files)")
    prefix = "train" if train else "t10k"
    wanted = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    found, missing = [], []
    for base in wanted:
        # Whatever has the name is read (and a FIFO or folder refused by name), rather than passed over.
        path = next((p for p in (os.path.join(root, base + ".gz"), os.path.join(root, base)) if os.path.lexists(p)),
                    None)
        if path is None and download_missing:
            os.makedirs(root, exist_ok=True)
            path = download_file(root, base + ".gz")
        if path is None:
            missing.append(f"{base}[.gz]")
        found.append(path)
    if missing:
        raise FreenetError(f"MNIST: {root} lacks {', '.join(missing)}; pass download=True to fetch them, "
                           "or root=None for the bundled sample")
    images, labels = _read(found[0], found[1])
    return images, labels, {os.path.basename(p): files.sha256_file(p) for p in found}


class MNIST(TensorDataset):
    """Handwritten digits: ``images`` float32 in [0, 1] of shape (N, 1, 28, 28), ``labels`` int64.

    ``root=None`` uses the sample bundled with freenet (``freenet/data/mnist5k``: 5,000 MNIST
    images, 500 per digit): ``train=True`` gives 4,000 of them, ``train=False`` the other 1,000
    (the last 100 of each digit; see ``bundled_split``). With a ``root`` folder it reads the official
    ``train-*`` or ``t10k-*`` IDX files there (gzip or not); ``download=True`` fetches missing ones from
    a public mirror and checks their SHA-256. ``sha256`` maps each file name read to its SHA-256 (the
    identity of the data); ``dataset[i]`` is ``(image, label)``.
    """

    classes = tuple(str(d) for d in range(10))

    def __init__(self, root=None, train=True, download=False):
        self.train = bool(train)
        if root is None:
            if download:
                raise FreenetError("MNIST: download=True needs a root folder to download into "
                                   "(root=None uses the bundled sample)")
            images, labels, self.sha256 = _bundled(self.train)
            self.root = None
        else:
            self.root = os.fspath(root)
            images, labels, self.sha256 = _official(self.root, self.train, download)
        super().__init__(np.divide(images, np.float32(255), dtype=np.float32)[:, None],
                         labels.astype(np.int64))

    @property
    def images(self):
        return self.arrays[0]

    @property
    def labels(self):
        return self.arrays[1]

    def __repr__(self):
        source = "bundled sample" if self.root is None else self.root
        return f"MNIST({source}, {'train' if self.train else 'test'}, {len(self)} images)"
