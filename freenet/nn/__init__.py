"""Neural-network building blocks, as in PyTorch's ``torch.nn``.

``Module`` and ``Parameter`` to build models, layers and containers, ``init`` for initialisers,
``utils`` for gradient clipping, ``fold_batch_norm`` for inference, and ``functional`` for
activations and losses as functions.
"""

from freenet.nn import functional
from freenet.nn.parameter import Parameter
from freenet.nn.module import IncompatibleKeys, Module
from freenet.nn import init, utils
from freenet.nn.container import ModuleList, Sequential
from freenet.nn.layers import GELU, Flatten, Identity, LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from freenet.nn.conv import AdaptiveAvgPool2d, AvgPool2d, Conv2d, MaxPool2d
from freenet.nn.norm import BatchNorm1d, BatchNorm2d, Dropout
from freenet.nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss
from freenet.nn.fold import fold_batch_norm

__all__ = ["functional", "init", "utils", "Parameter", "Module", "IncompatibleKeys", "Sequential", "ModuleList",
           "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm1d", "BatchNorm2d", "Dropout",
           "Identity", "Flatten", "ReLU", "LeakyReLU", "GELU", "Tanh", "Sigmoid", "CrossEntropyLoss",
           "NLLLoss", "MSELoss", "BCEWithLogitsLoss", "fold_batch_norm"]
