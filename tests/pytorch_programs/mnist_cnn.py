"""A PyTorch program: an MNIST-style convolutional classifier trained with Adadelta and a step schedule.

The "digits" are synthetic (made with NumPy from the seed, so both libraries see the same images): each of
the ten classes is a fixed random pattern of strokes, and an image is its class pattern plus noise.
"""

import os
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self, p_conv=0.25, p_fc=0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 1)
        self.conv2 = nn.Conv2d(8, 16, 3, 1)
        self.dropout1 = nn.Dropout(p_conv)
        self.dropout2 = nn.Dropout(p_fc)
        self.fc1 = nn.Linear(12 * 12 * 16, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


def synthetic_digits(seed, count):
    rng = np.random.default_rng(seed)
    patterns = (rng.random((10, 28, 28)) > 0.85).astype(np.float32)
    labels = rng.integers(0, 10, size=count)
    images = 0.8 * patterns[labels] + 0.4 * rng.random((count, 28, 28))
    images = (images - 0.1307) / 0.3081  # the usual MNIST normalisation
    return images[:, None].astype(np.float32), labels.astype(np.int64)


def train(model, device, train_loader, optimizer, losses):
    model.train()
    for data, target in train_loader:
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())


def test(model, device, test_loader):
    model.eval()
    test_loss, correct, correct_by_max = 0.0, 0, 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()
            correct_by_max += (output.max(1)[1] == target).sum().item()
    n = len(test_loader.dataset)
    return test_loss / n, correct / n, correct_by_max / n


def main(seed, steps, initial=None, dropout=True):
    """Trains for ``steps`` epochs of 4 batches; ``initial`` (name -> ndarray) replaces the random weights."""
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images, labels = synthetic_digits(seed, 96)
    train_set = TensorDataset(torch.from_numpy(images[:64]), torch.from_numpy(labels[:64]))
    test_set = TensorDataset(torch.tensor(images[64:]), torch.tensor(labels[64:]))
    train_loader = DataLoader(train_set, batch_size=16, shuffle=False)
    test_loader = DataLoader(test_set, batch_size=20, shuffle=False)

    model = Net() if dropout else Net(0.0, 0.0)
    model = model.to(device)
    if initial is not None:
        model.load_state_dict({name: torch.from_numpy(value) for name, value in initial.items()})
    named = list(model.named_parameters()) + list(model.named_buffers())
    start = {name: t.detach().cpu().numpy().copy() for name, t in named}

    optimizer = optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
    losses, lrs = [], []
    for epoch in range(1, steps + 1):
        train(model, device, train_loader, optimizer, losses)
        lrs.append(scheduler.get_last_lr()[0])
        scheduler.step()
    test_loss, accuracy, accuracy_by_max = test(model, device, test_loader)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mnist_cnn.pt")
        torch.save(model.state_dict(), path)
        reloaded = Net().to(device)
        reloaded.load_state_dict(torch.load(path))
    reloaded.eval()
    with torch.no_grad():
        first = next(iter(test_loader))[0]
        same_after_reload = (model(first) == reloaded(first)).all().item()

    return {
        "initial": start,
        "losses": losses,
        "lrs": lrs,
        "test_loss": test_loss,
        "accuracy": accuracy,
        "accuracy_by_max": accuracy_by_max,
        "reloaded_test": test(reloaded, device, test_loader),
        "same_after_reload": same_after_reload,
        "conv1.weight": model.conv1.weight.detach().numpy(),
        "fc2.bias": model.fc2.bias.detach().cpu().numpy(),
        "parameter_count": sum(p.numel() for p in model.parameters()),
    }
