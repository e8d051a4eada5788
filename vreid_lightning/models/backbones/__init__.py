"""Backbone registry: VGG_CNN_M(_1024), VGG16, ResNet-50, DenseNet-121, SE-ResNeXt101-32x4d, SENet-154.

``build_backbone(name, pretrained=False, weights=None, **kwargs)`` returns a ``Backbone`` whose
``forward`` gives the last conv map and whose ``out_channels`` says its width. See
docs/weights.md for weights.
"""
from __future__ import annotations

from . import densenet, resnet, senet, vgg16, vgg_cnn_m  # noqa: F401  (registers the backbones)
from .base import Backbone
from .caffe import caffe_blobs_to_state_dict, read_caffemodel
from .densenet import DenseNet121
from .registry import BACKBONES, build_backbone, register_backbone
from .resnet import ResNet50
from .senet import TimmBackbone
from .vgg16 import VGG16
from .vgg_cnn_m import VGGCNNM
from .weights import read_state_dict_file

__all__ = [
    "BACKBONES",
    "Backbone",
    "DenseNet121",
    "ResNet50",
    "TimmBackbone",
    "VGG16",
    "VGGCNNM",
    "build_backbone",
    "caffe_blobs_to_state_dict",
    "read_caffemodel",
    "read_state_dict_file",
    "register_backbone",
]
