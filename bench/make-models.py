#!/usr/bin/env python3
"""Makes the benchmark's TorchScript models in bench/models/ (not committed).

    /usr/bin/python3 bench/make-models.py [--out bench/models]

- resnet18.pt, resnet34.pt: torchvision's architectures, random init with fixed
  seeds, traced on a 1 x 3 x 32 x 32 input (workloads A and B).
- chain50.pt, chain200.pt, chain500.pt: L Linear(256, 256) layers with tanh in
  between, traced on a 1 x 256 input, so L tapped layers (workload C).
- resnet50.pt, wide_resnet50_2.pt with --gpu-models (or --gpu-only): for the
  GPU benchmark (224 x 224 inputs); defined here when torchvision is missing.

Writes bench/models/manifest.json with the files, input shapes and versions.
"""
import argparse
import json
import os
import sys

import torch

try:
    import torchvision
except ImportError:  # the GPU machine's Python may lack it: ResNet-50s are defined below
    torchvision = None


class Chain(torch.nn.Module):
    def __init__(self, layers: int, width: int):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(width, width) for _ in range(layers)])

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


def bottleneck_resnet(layers, width_per_group):
    """torchvision's ResNet-50 family (Bottleneck blocks, the same submodule
    names), for machines whose Python torch has no torchvision."""
    nn = torch.nn

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            width = int(planes * (width_per_group / 64.0))
            self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            if self.downsample is not None:
                identity = self.downsample(x)
            return self.relu(out + identity)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = self._make(64, layers[0])
            self.layer2 = self._make(128, layers[1], 2)
            self.layer3 = self._make(256, layers[2], 2)
            self.layer4 = self._make(512, layers[3], 2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(2048, 1000)

        def _make(self, planes, blocks, stride=1):
            downsample = None
            if stride != 1 or self.inplanes != planes * 4:
                downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                                           nn.BatchNorm2d(planes * 4))
            out = [Bottleneck(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes * 4
            out += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
            return nn.Sequential(*out)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet()


def architecture(name):
    if torchvision is not None:
        return getattr(torchvision.models, name)()
    if name == 'resnet50':
        return bottleneck_resnet([3, 4, 6, 3], 64)
    if name == 'wide_resnet50_2':
        return bottleneck_resnet([3, 4, 6, 3], 128)
    raise SystemExit(f'{name} needs torchvision (apt-get install python3-torchvision)')


def traced(model, shape):
    model.eval()
    with torch.no_grad():
        return torch.jit.trace(model, torch.randn(*shape))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'models'))
    parser.add_argument('--gpu-models', action='store_true', help='also ResNet50 and WideResNet50-2 (224 x 224)')
    parser.add_argument('--gpu-only', action='store_true', help='only ResNet50 and WideResNet50-2')
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    manifest = {'torch': torch.__version__, 'torchvision': getattr(torchvision, '__version__', None), 'models': {}}

    def save(name, model, shape, seed):
        path = os.path.join(args.out, f'{name}.pt')
        traced(model, shape).save(path)
        manifest['models'][name] = {'file': f'{name}.pt', 'inputShape': list(shape[1:]), 'seed': seed}
        print(f'wrote {path}', file=sys.stderr)

    if not args.gpu_only:
        for seed, name in ((18, 'resnet18'), (34, 'resnet34')):
            torch.manual_seed(seed)
            save(name, architecture(name), (1, 3, 32, 32), seed)
        for layers in (50, 200, 500):
            torch.manual_seed(layers)
            save(f'chain{layers}', Chain(layers, 256), (1, 256), layers)
    if args.gpu_models or args.gpu_only:
        for seed, name in ((50, 'resnet50'), (250, 'wide_resnet50_2')):
            torch.manual_seed(seed)
            save(name, architecture(name), (1, 3, 224, 224), seed)
    with open(os.path.join(args.out, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=2)
        f.write('\n')


if __name__ == '__main__':
    main()
