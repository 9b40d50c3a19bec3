"""Mixed precision for training steps: the networks' matrix products in bfloat16.

Under ``--precision bfloat16`` a training step runs inside ``torch.autocast``, which computes
the linear and convolution layers (and any other matrix product) in bfloat16, and every
``nn.Linear`` / ``nn.Conv*`` layer of the model and guide hands its output back as float32
(a forward hook), so that the activations, the log-densities and Pyro's sums over
enumerated values stay in float32. Evaluation (the reported ELBOs and accuracies) always
runs in float32. The gain depends on the processor: where it has bfloat16 matrix units
(AVX512-BF16 / AMX CPUs, recent GPUs) a product takes a fraction of its float32 time.
"""

from contextlib import nullcontext

import torch
from torch import nn

from pyrovae.errors import PyrovaeError
from pyrovae.inference.parameters import owner_module

PRECISIONS = ("float32", "bfloat16")

_MATMUL_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)


def check_precision(name: str) -> str:
    """``name`` if it is a known precision, else a one-line error listing them."""
    if name not in PRECISIONS:
        raise PyrovaeError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    return name


def _float32_output(module, inputs, output):
    return output.float() if isinstance(output, torch.Tensor) else output


class StepPrecision:
    """The context a training step's loss is computed in (:meth:`context`).

    :param precision: ``"float32"`` (nothing changes) or ``"bfloat16"``.
    :param programs: the model and guide; the matrix-product layers of the modules that own
        them get the float32-output hook.
    :param device: where the parameters live (autocast's device type).
    """

    def __init__(self, precision: str, programs, device: torch.device):
        self.precision = check_precision(precision)
        self.device_type = device.type
        self.hooks = []
        if self.precision == "float32":
            return
        seen = set()
        for program in programs:
            module = owner_module(program)
            for layer in () if module is None else module.modules():
                if isinstance(layer, _MATMUL_LAYERS) and id(layer) not in seen:
                    seen.add(id(layer))
                    self.hooks.append(layer.register_forward_hook(_float32_output))

    def context(self):
        """``torch.autocast`` to bfloat16, or a no-op context for float32."""
        if self.precision == "float32":
            return nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16)
