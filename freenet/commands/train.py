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
    mnist.set_defaults(run=train_mnist)


def train_mnist(args):
    import freenet as fn
    from freenet.recipes import mnist

    if args.download and args.data is None:
        raise fn.FreenetError("--download needs --data DIR to download into")
    fn.set_num_threads(args.threads)
    if args.download:
        fn.data.MNIST(args.data, train=True, download=True)
        fn.data.MNIST(args.data, train=False, download=True)
    recipe = mnist.Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                          data=args.data)
    result = mnist.train(recipe, progress=not args.quiet)
    fn.save(result.model.state_dict(), args.out, metadata={"freenet.recipe": json.dumps(recipe.as_dict())})
    print(f"test accuracy {result.accuracy:.4f} after {recipe.epochs} epochs in {result.seconds:.1f} s; "
          f"weights in {args.out} (sha256 {result.sha256[:16]}...)")
    if args.json:
        summary = {"accuracy": result.accuracy, "epochs": recipe.epochs, "seconds": result.seconds,
                   "sha256": result.sha256, "threads": fn.get_num_threads(), "recipe": recipe.as_dict(),
                   "history": result.history}
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0
