"""A PyTorch program: a small residual network (basic blocks, batch norm, a strided 1x1 shortcut) trained with
SGD, momentum and weight decay on synthetic 16x16 colour images of four classes (made with NumPy)."""

import numpy as np
import torch
import torch.nn as nn


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=4, width=8):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2 * width * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def synthetic_images(seed, count):
    rng = np.random.default_rng(seed)
    prototypes = rng.standard_normal((4, 3, 16, 16))
    labels = rng.integers(0, 4, size=count)
    images = prototypes[labels] + rng.standard_normal((count, 3, 16, 16))
    return images.astype(np.float32), labels


def main(seed, steps, initial=None):
    """``steps`` SGD steps on batches of 16; ``initial`` (name -> ndarray) replaces the random weights."""
    torch.manual_seed(seed)
    images, labels = synthetic_images(seed, 80)
    x_train, y_train = torch.from_numpy(images[:64]), torch.from_numpy(labels[:64])
    x_test, y_test = torch.from_numpy(images[64:]), torch.from_numpy(labels[64:])

    model = ResNet(BasicBlock, [1, 1])
    if initial is not None:
        model.load_state_dict({name: torch.from_numpy(value) for name, value in initial.items()})
    named = list(model.named_parameters()) + list(model.named_buffers())
    start = {name: t.detach().numpy().copy() for name, t in named}
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)

    losses = []
    model.train()
    for step in range(steps):
        i = (step * 16) % 64
        inputs, targets = x_train[i:i + 16], y_train[i:i + 16]
        loss = criterion(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    model.eval()
    with torch.no_grad():
        logits = model(x_test)
        test_loss = criterion(logits, y_test).item()
        _, predicted = logits.max(1)
        accuracy = predicted.eq(y_test).sum().item() / y_test.size(0)

    return {
        "initial": start,
        "losses": losses,
        "test_logits": logits.numpy(),
        "test_loss": test_loss,
        "accuracy": accuracy,
        "fc.weight": model.fc.weight.detach().numpy(),
        "layer2.0.downsample.0.weight": model.layer2[0].downsample[0].weight.detach().numpy(),
        "bn1.running_mean": model.bn1.running_mean.numpy(),
        "bn1.running_var": model.bn1.running_var.numpy(),
        "num_batches_tracked": model.bn1.num_batches_tracked.item(),
    }
