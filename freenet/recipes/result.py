"""What every recipe's ``train`` returns."""

from dataclasses import dataclass


@dataclass
class Result:
    model: object  # the trained nn.Module
    accuracy: float  # on the test set after the last epoch (None where the recipe has no test set)
    seconds: float  # of training
    sha256: str  # of the weights (freenet.serialize.weights_sha256)
    history: list  # one dict per epoch
