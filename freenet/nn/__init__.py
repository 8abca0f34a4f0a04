"""Neural-network building blocks, as in PyTorch's ``torch.nn``.

``Module`` and ``Parameter`` to build models, layers (Linear, Conv1d/2d, Embedding, batch, layer and group
norm, ...) and containers (Sequential, ModuleList, ModuleDict), ``init`` for initialisers,
``utils`` for gradient clipping, ``fold_batch_norm`` for inference, and ``functional`` for
activations and losses as functions.
"""

from freenet.nn import functional
from freenet.nn.parameter import Parameter
from freenet.nn.module import IncompatibleKeys, Module
from freenet.nn import init, utils
from freenet.nn.container import ModuleDict, ModuleList, Sequential
from freenet.nn.layers import (GELU, Flatten, Identity, LeakyReLU, Linear, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax,
                               Tanh)
from freenet.nn.conv import AdaptiveAvgPool2d, AvgPool2d, Conv1d, Conv2d, MaxPool2d
from freenet.nn.norm import BatchNorm1d, BatchNorm2d, Dropout, GroupNorm, LayerNorm
from freenet.nn.sparse import Embedding
from freenet.nn.attention import MultiheadAttention
from freenet.nn.loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from freenet.nn.fold import fold_batch_norm
from freenet.nn.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

__all__ = ["functional", "init", "utils", "Parameter", "Module", "IncompatibleKeys", "Sequential", "ModuleList",
           "ModuleDict", "Linear", "Conv1d", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm1d",
           "BatchNorm2d", "LayerNorm", "GroupNorm", "Dropout", "Embedding", "Identity", "Flatten", "ReLU", "LeakyReLU",
           "GELU", "SiLU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax", "CrossEntropyLoss", "NLLLoss", "MSELoss",
           "L1Loss", "BCELoss", "BCEWithLogitsLoss", "fold_batch_norm", "MultiheadAttention", "RNN", "LSTM", "GRU",
           "RNNCell", "LSTMCell", "GRUCell"]
