"""FORMAT ``vgg-cnn-m``: the BVLC VGG_CNN_M(_1024) ImageNet models, as ``models.backbones.caffe`` converts them."""

from __future__ import annotations

from collections.abc import Sequence


def main(fmt: str, argv: Sequence[str]) -> int:
    from vreid_lightning.models.backbones.caffe import main as caffe_main

    return caffe_main(list(argv))  # 2 with one line for a missing or wrong file
