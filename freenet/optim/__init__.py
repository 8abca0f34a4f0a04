"""Optimizers and learning-rate schedules, as in ``torch.optim``.

>>> import freenet as fn
>>> from freenet import optim
>>> w = fn.tensor([1.0, -2.0], requires_grad=True)
>>> opt = optim.SGD([w], lr=0.1)
>>> (w * w).sum().backward(); opt.step(); opt.zero_grad()
>>> w
tensor([ 0.8, -1.6], requires_grad=True)
"""

from freenet.optim import lr_scheduler
from freenet.optim.adadelta import Adadelta
from freenet.optim.adam import Adam, AdamW
from freenet.optim.optimizer import Optimizer
from freenet.optim.rmsprop import RMSprop
from freenet.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adadelta", "lr_scheduler"]
