"""npgrad's neural-network package: Modules, layers, losses, init, optimisers, data.

```python
import nn
from nn import functional as F
from nn import optim
```
"""

from . import data, functional, init, optim, utils
from .attention import MultiheadAttention
from .layers import (
    GELU,
    MLP,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Embedding,
    Flatten,
    Identity,
    LayerNorm,
    LeakyReLU,
    Linear,
    LogSoftmax,
    MaxPool2d,
    ModuleList,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss
from .module import Module, Parameter
from .recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .serialization import load, save

__all__ = [
    "Module", "Parameter", "save", "load", "functional", "init", "optim", "data",
    "Sequential", "ModuleList", "Linear", "MLP", "ReLU", "Tanh", "Sigmoid", "GELU", "LeakyReLU",
    "Softmax", "LogSoftmax", "Identity", "Flatten", "Dropout", "Conv2d", "MaxPool2d",
    "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "Embedding",
    "CrossEntropyLoss", "NLLLoss", "MSELoss", "BCEWithLogitsLoss",
    "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "MultiheadAttention", "utils",
]  # fmt: skip
