"""``freenet train RECIPE``: the built-in training recipes."""

import argparse
import json
import os

from freenet.commands.common import positive_int


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
    mnist.add_argument("--epochs", type=positive_int, default=5, help="passes over the training set")
    mnist.add_argument("--batch-size", type=positive_int, default=64, help="images per SGD step")
    mnist.add_argument("--lr", type=float, default=0.1, help="peak learning rate (one-cycle schedule)")
    mnist.add_argument("--seed", type=int, default=0, help="seed for initial weights and shuffling")
    mnist.add_argument("--threads", type=positive_int, default=os.cpu_count(),
                       help="threads to compute with (the result does not depend on it)")
    mnist.add_argument("--out", metavar="FILE", default="mnist-cnn.safetensors", help="where to write the weights")
    mnist.add_argument("--json", metavar="FILE", help="also write a summary: accuracy, epochs, seconds, sha256")
    mnist.add_argument("--quiet", action="store_true", help="no progress bar")
    mnist.add_argument("--license", default=None, metavar="SPDX",
                       help="licence of the trained weights, as an SPDX id (default: CC-BY-SA-3.0, as the data)")
    mnist.add_argument("--no-source", action="store_true",
                       help="do not embed the training program (freenet's source) in the weights file")
    mnist.add_argument("--checkpoint-every", type=positive_int, metavar="N", help="write a checkpoint every N steps")
    mnist.add_argument("--checkpoint-dir", metavar="DIR", default="checkpoints",
                       help="where --checkpoint-every writes checkpoints")
    mnist.add_argument("--resume", metavar="DIR", help="continue from the newest good checkpoint in DIR")
    mnist.set_defaults(run=train_mnist)


def train_mnist(args):
    import freenet as fn
    from freenet import provenance
    from freenet.recipes import mnist

    if args.download and args.data is None:
        raise fn.FreenetError("--download needs --data DIR to download into")
    fn.set_num_threads(args.threads)
    if args.download:
        fn.data.MNIST(args.data, train=True, download=True)
        fn.data.MNIST(args.data, train=False, download=True)
    recipe = mnist.Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                          data=args.data)
    data = mnist.data_identity(recipe)  # hashes the data files before training on them
    notice = provenance.training_notice()
    if notice:
        print(notice)
    result = mnist.train(recipe, progress=not args.quiet, checkpoint_every=args.checkpoint_every,
                         checkpoint_dir=args.checkpoint_dir, resume=args.resume)
    state = result.model.state_dict()
    record = provenance.make_record(
        recipe="mnist", params=recipe.as_dict(), architecture={"recipe": "mnist", "description": mnist.ARCHITECTURE},
        data=data, metrics={"test_accuracy": result.accuracy, "train_seconds": result.seconds,
                            "history": result.history},
        license=args.license or mnist.LICENSE, state_dict=state)
    provenance.save_model(args.out, state, record, None if args.no_source else provenance.source_archive())
    print(f"test accuracy {result.accuracy:.4f} after {recipe.epochs} epochs in {result.seconds:.1f} s; "
          f"weights in {args.out} (sha256 {result.sha256[:16]}...)")
    if args.json:
        summary = {"accuracy": result.accuracy, "epochs": recipe.epochs, "seconds": result.seconds,
                   "sha256": result.sha256, "threads": fn.get_num_threads(), "recipe": recipe.as_dict(),
                   "history": result.history}
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0
