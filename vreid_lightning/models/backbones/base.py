"""The interface every backbone implements."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["Backbone", "take_head"]


def take_head(backbone: nn.Module) -> nn.Sequential | None:
    """Hand a backbone's VGG ``head`` over to a method that makes it its own layers (RAM's Conv branch).

    Returns the head (or ``None`` for a backbone without one) and detaches it from the backbone, so
    every parameter has one name in the method's state dict. The trunk (``forward``) is untouched.

    Raises:
        ValueError: the head was already handed to another model (build one backbone per model).
    """
    head = getattr(backbone, "head", None)
    if head is None:
        if getattr(backbone, "_head_taken", False):
            raise ValueError("this backbone's VGG head already belongs to another model; build a fresh backbone "
                             "per model (carry trained weights with load_previous_stage)")
        return None
    backbone.head = None
    backbone._head_taken = True
    return head


class Backbone(nn.Module):
    """A convolutional trunk that returns its last conv feature map.

    Attributes:
        out_channels: Channels C of the map returned by ``forward`` (B, C, H, W).
        head: For VGG-type backbones, the pretrained fully connected stack
            (pool5 -> flatten -> fc6 -> ReLU -> Dropout -> fc7 -> ReLU -> Dropout) as an
            ``nn.Sequential``. It is NOT applied in ``forward``: a method calls
            ``backbone.head(feature_map)`` where its paper does (e.g. RAM's Conv branch).
            ``None`` for backbones without a pretrained FC stack.
        head_dim: Output width of ``head`` (fc7), or ``None``.
        head_pool_size: Spatial size pool5 produces inside ``head``, or ``None``.
    """

    out_channels: int
    head: nn.Sequential | None
    head_dim: int | None
    head_pool_size: int | None

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = int(out_channels)
        self.head = None
        self.head_dim = None
        self.head_pool_size = None

    @property
    def trunk(self) -> nn.Module:
        """The convolutional trunk: this module's ``forward`` (images -> last conv map)."""
        return self

    def take_head(self) -> nn.Sequential | None:
        """Hand the VGG head over to the method that uses it (see :func:`take_head`)."""
        return take_head(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Map images (B, 3, H, W) to the last conv feature map (B, out_channels, h, w)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def convert_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename a foreign state dict (library or Caffe layout) to this module's keys.

        The default is the identity. Subclasses drop the classifier of the library
        checkpoint (a backbone has none) and rename keys whose layout differs.

        Args:
            state_dict: Parameters as stored in a checkpoint.

        Returns:
            A new dict keyed like ``self.state_dict()``.
        """
        return dict(state_dict)
