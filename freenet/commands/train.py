"""``freenet train RECIPE``: the built-in training recipes."""

import argparse
import json

from freenet.commands.common import (check_folder, check_output, non_negative_int, positive_int, write_file_output,
                                     write_output)


def register(commands):
    train = commands.add_parser("train", help="train a built-in recipe", description="Train a built-in recipe.")
    recipes = train.add_subparsers(dest="recipe", metavar="RECIPE")
    recipes.required = True
    mnist = recipes.add_parser(
        "mnist", help="a small CNN on MNIST digits",
        description="Train a small CNN (two conv-ReLU-maxpool stages, two linear layers) on MNIST with SGD "
                    "and momentum, print the test accuracy, and write the weights (safetensors). Without "
                    "--data it uses the 5,000-image sample bundled with freenet (4,000 to train, 1,000 to test).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    mnist.add_argument("--data", metavar="DIR", help="folder with the official MNIST IDX files "
                       "(train-images-idx3-ubyte[.gz] ...); default: the bundled sample")
    mnist.add_argument("--download", action="store_true", help="fetch missing official files into --data")
    _recipe_arguments(mnist, epochs=5, batch_size=64, lr_help="peak learning rate (one-cycle schedule)")
    _output_arguments(mnist, out="mnist-cnn.safetensors", license="CC-BY-SA-3.0, as the data")
    mnist.set_defaults(run=train_mnist)

    cifar = recipes.add_parser(
        "cifar10", help="a small ResNet on CIFAR-10 images",
        description="Train a small ResNet (ResNet-20 by default: a 3x3 stem, three stages of basic blocks at "
                    "16/32/64 channels, global average pooling, a linear layer) on CIFAR-10 with SGD, momentum, "
                    "a cosine schedule, random crops and flips; print the test accuracy and write the weights "
                    "(safetensors). CIFAR-10 is not bundled and freenet does not download it: get the binary "
                    "version from https://www.cs.toronto.edu/~kriz/cifar.html and pass its folder with --data.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cifar.add_argument("--data", metavar="DIR", help="folder with CIFAR-10's binary files (data_batch_1.bin .. "
                       "data_batch_5.bin, test_batch.bin, or the cifar-10-batches-bin folder that holds them); "
                       "required")
    _recipe_arguments(cifar, epochs=30, batch_size=128, lr_help="initial learning rate (cosine schedule to 0)")
    cifar.add_argument("--blocks", type=positive_int, default=3, help="basic blocks per stage (3: ResNet-20)")
    cifar.add_argument("--width", type=positive_int, default=16,
                       help="channels of the first stage (the others have 2x and 4x as many)")
    _output_arguments(cifar, out="cifar10-resnet.safetensors", license="GPL-3.0-or-later; CIFAR-10 states none")
    cifar.set_defaults(run=train_cifar10)


def _recipe_arguments(parser, epochs, batch_size, lr_help):
    parser.add_argument("--epochs", type=positive_int, default=epochs, help="passes over the training set")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size, help="images per SGD step")
    parser.add_argument("--lr", type=float, default=0.1, help=lr_help)
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed for initial weights, shuffling and augmentation")
    parser.add_argument("--shards", type=positive_int, default=1,
                        help="cut each batch into this many fixed parts, which MPI processes (mpiexec -n K, "
                             "K <= shards) share out; the weights depend on --shards, not on K")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="threads to compute with (the result does not depend on it); default: the "
                             "machine's CPUs, shared among the MPI processes on it")


def _output_arguments(parser, out, license):
    parser.add_argument("--out", metavar="FILE", default=out, help="where to write the weights")
    parser.add_argument("--json", metavar="FILE", help="also write a summary: accuracy, epochs, seconds, sha256")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--license", default=None, metavar="SPDX",
                        help=f"licence of the trained weights, as an SPDX id (default: {license})")
    parser.add_argument("--no-source", action="store_true",
                        help="do not embed the training program (freenet's source) in the weights file")
    parser.add_argument("--checkpoint-every", type=positive_int, metavar="N", help="write a checkpoint every N steps")
    parser.add_argument("--checkpoint-dir", metavar="DIR", default="checkpoints",
                        help="where --checkpoint-every writes checkpoints")
    parser.add_argument("--resume", metavar="DIR", help="continue from the newest good checkpoint in DIR")


def train_mnist(args):
    import freenet as fn
    from freenet.recipes import mnist

    if args.download and args.data is None:
        raise fn.FreenetError("--download needs --data DIR to download into")
    _check_outputs(args)
    if args.download:
        check_folder(args.data, "data folder (--download)")
        fn.data.MNIST(args.data, train=True, download=True)
        fn.data.MNIST(args.data, train=False, download=True)
    recipe = mnist.Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                          shards=args.shards, data=args.data)
    return _train(args, "mnist", mnist, recipe, mnist.ARCHITECTURE)


def train_cifar10(args):
    from freenet.recipes import cifar10

    _check_outputs(args)
    recipe = cifar10.Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                            blocks=args.blocks, width=args.width, shards=args.shards, data=args.data)
    return _train(args, "cifar10", cifar10, recipe, cifar10.architecture(recipe))


def _check_outputs(args):
    """Every output of a training run can be written: checked before the data is read and the training done."""
    check_output(args.out, "weights (--out)")
    if args.json:
        check_output(args.json, "summary (--json)")
    if args.checkpoint_every:
        check_folder(args.checkpoint_dir, "checkpoints (--checkpoint-dir)")


def _train(args, name, module, recipe, architecture):
    """Trains the recipe ``name`` (its ``module``), writes the weights with their record, prints the result."""
    import freenet as fn
    from freenet import distributed, provenance

    fn.set_num_threads(args.threads or distributed.default_threads())
    main = distributed.world().main  # under MPI, the first process writes and prints
    data = module.data_identity(recipe)  # hashes the data files before training on them
    notice = provenance.training_notice()
    if notice and main:
        print(notice)
    result = module.train(recipe, progress=not args.quiet, checkpoint_every=args.checkpoint_every,
                          checkpoint_dir=args.checkpoint_dir, resume=args.resume)
    if not main:
        return 0
    state = result.model.state_dict()
    record = provenance.make_record(
        recipe=name, params=recipe.as_dict(), architecture={"recipe": name, "description": architecture},
        data=data, metrics={"test_accuracy": result.accuracy, "train_seconds": result.seconds,
                            "history": result.history},
        license=args.license or module.LICENSE, state_dict=state)
    archive = None if args.no_source else provenance.source_archive()
    # Written atomically; if a path fails even now, the result is kept elsewhere and the status says so.
    out = write_output(args.out, "weights", lambda path: provenance.save_model(path, state, record, archive))
    print(f"test accuracy {result.accuracy:.4f} after {recipe.epochs} epochs in {result.seconds:.1f} s; "
          f"weights in {out} (sha256 {result.sha256[:16]}...)")
    written = out == args.out
    if args.json:
        summary = {"accuracy": result.accuracy, "epochs": recipe.epochs, "seconds": result.seconds,
                   "sha256": result.sha256, "threads": fn.get_num_threads(),
                   "processes": distributed.world().size, "recipe": recipe.as_dict(),
                   "history": result.history}
        text = json.dumps(summary, indent=2) + "\n"
        written = write_file_output(args.json, "summary", text.encode()) == args.json and written
    return 0 if written else 1
