"""The evaluation network of repae (src/models/cnn_classifier.h), written as plain
torch.nn: a small VGG-style CNN classifier.

    stage s (width w_s):  conv1 3x3 pad 1 (no bias) -> GroupNorm(G, w_s) -> ReLU
                          conv2 3x3 pad 1 (no bias) -> GroupNorm(G, w_s) -> ReLU
                          MaxPool2d(2, 2)
    global average pool -> features [N, w_last]  (the Frechet-distance features)
    head: Linear(w_last, K) -> logits [N, K]      (only when num_classes > 0)

State-dict keys: stages.<s>.conv1.weight, stages.<s>.norm1.{weight,bias},
stages.<s>.conv2.weight, stages.<s>.norm2.{weight,bias}, head.{weight,bias}.
GroupNorm eps is torch's default 1e-5.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class CNNStage(nn.Module):
    def __init__(self, cin, cout, groups, eps=1e-5):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)

    def forward(self, x):
        x = F.relu(self.norm1(self.conv1(x)))
        x = F.relu(self.norm2(self.conv2(x)))
        return F.max_pool2d(x, 2, 2)


class CNNClassifier(nn.Module):
    def __init__(self, in_chans=1, widths=(32, 64, 128), groups=8, num_classes=10, gn_eps=1e-5):
        super().__init__()
        chans = [in_chans] + list(widths)
        self.stages = nn.ModuleList(CNNStage(chans[i], chans[i + 1], groups, gn_eps) for i in range(len(widths)))
        self.head = nn.Linear(widths[-1], num_classes) if num_classes > 0 else None

    def features(self, x):
        for s in self.stages:
            x = s(x)
        return x.mean(dim=(2, 3))

    def forward(self, x):
        f = self.features(x)
        return f, (self.head(f) if self.head is not None else None)
