"""A small ResNet for 32x32 images (He et al. 2016, section 4.2): a 3x3 stem, three stages of basic blocks
at ``width``, 2 ``width`` and 4 ``width`` channels (the second and third start with a stride of 2, their
shortcut a strided 1x1 conv), global average pooling and a linear classifier. ``blocks=3``,
``width=16`` is ResNet-20.

>>> ResNet(blocks=1, width=4).layer2[0].shortcut[0]
Conv2d(4, 8, kernel_size=(1, 1), stride=(2, 2), bias=False)
"""

from freenet import nn


class BasicBlock(nn.Module):
    """conv3x3 (strided) - BN - ReLU - conv3x3 - BN, plus the shortcut, then ReLU. The shortcut is the input,
    or a 1x1 conv - BN with the same stride where the block changes the shape."""

    def __init__(self, channels_in, channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = None
        if stride != 1 or channels_in != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(channels_in, channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(channels))

    def forward(self, x):
        y = self.bn1(self.conv1(x), relu=True)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return self.bn2(self.conv2(y), residual=shortcut, relu=True)  # one fused pass


class ResNet(nn.Module):
    """(N, 3, H, W) images -> (N, ``classes``) logits; ``blocks`` basic blocks per stage."""

    def __init__(self, blocks=3, width=16, classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        channels = width
        for stage, out in enumerate((width, 2 * width, 4 * width), start=1):
            stride = 1 if stage == 1 else 2
            layers = [BasicBlock(channels if i == 0 else out, out, stride if i == 0 else 1) for i in range(blocks)]
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
            channels = out
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        x = self.bn(self.conv(x), relu=True)
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.pool(x)))
