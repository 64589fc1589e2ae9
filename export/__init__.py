"""firstwords training and export.

torch is imported lazily (through `require_torch`) so that `firstwords --help` and the device runtime work
on an install without the `train` extra.
"""

from firstwords.edge.errors import MissingExtraError


def require_torch():
    """Return the torch module, or raise a clear error saying which extra to install."""
    try:
        import torch
    except ImportError as e:
        raise MissingExtraError(
            "this command needs PyTorch, which is not installed. Install the training extra: "
            "pip install 'firstwords[train]'"
        ) from e
    return torch
