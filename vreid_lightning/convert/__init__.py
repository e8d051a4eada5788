"""Importers for checkpoints released by the papers' authors (and the ImageNet Caffe backbones).

One command, ``python -m vreid_lightning.convert FORMAT IN OUT [options]``; each FORMAT lives in its own
module of this package (listed in :data:`FORMATS`) exposing ``main(fmt, argv)``. A format's module reads
the authors' file strictly (every learnable tensor consumed, shapes checked) and writes a checkpoint the
matching ``*_authors`` experiment tests with ``train=false ckpt_path=OUT``.
"""

from __future__ import annotations

__all__ = ["FORMATS"]

#: FORMAT -> (module of this package, one-line description). Names follow ../shared/authors-code/README.md.
FORMATS: dict[str, tuple[str, str]] = {
    "vgg-cnn-m": ("imagenet_caffe", "BVLC VGG_CNN_M(_1024) ImageNet .caffemodel -> backbone .pth (backbone.weights=)"),
    "ram-caffe": ("ram_caffe", "RAM authors' VeRi .caffemodel (liu-xb/RAM) -> ram_veri_authors checkpoint"),
    "rnn-ha-vgg": ("rnn_ha", "RNN-HA authors' VGG state dict (tzzcl/RNN-HA, PyTorch 0.3) -> rnn_ha_*_authors checkpoint"),
    "rnn-ha-resnet50": ("rnn_ha", "RNN-HA authors' ResNet-50 state dict -> rnn_ha_*_authors (resnet) checkpoint"),
    "vehiclenet-resnet50": ("vehiclenet", "VehicleNet net_last.pth, ResNet-50 (layumi/AICIty-reID-2020) -> checkpoint"),
    "vehiclenet-densenet121": ("vehiclenet", "VehicleNet net_last.pth, DenseNet-121 -> checkpoint"),
    "vehiclenet-seresnext101": ("vehiclenet", "VehicleNet net_last.pth, SE-ResNeXt101 (Cadene keys) -> checkpoint"),
}
