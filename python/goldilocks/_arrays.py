"""Framework-neutral array handling: which library an argument comes from,
the checks DLPack cannot express (device, autograd), and new outputs of the
caller's type. PyTorch is never imported here; it is used only if the caller
already imported it."""
import sys

import numpy as np


def _torch():
    return sys.modules.get("torch")


def is_torch(x):
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def prepare(x, name):
    """Returns `x` ready for the extension, or raises saying what is wrong with it."""
    if isinstance(x, np.ndarray):
        return x
    if is_torch(x):
        torch = _torch()
        if not x.is_cpu:  # (x.device builds an object: a third of this function's time)
            raise ValueError(
                f"{name}: the tensor is on device '{x.device}'; Goldilocks computes on the CPU, move it with .cpu()")
        if x.layout != torch.strided:
            raise ValueError(f"{name}: layout {x.layout} is not supported; pass a dense tensor (.to_dense())")
        if x.requires_grad:
            # No backward pass: silently dropping the gradient would be wrong.
            if torch.is_grad_enabled():
                raise NotImplementedError(
                    f"{name}: requires grad, but Goldilocks has no backward pass; "
                    "call it under torch.no_grad() / torch.inference_mode() or pass .detach()")
            x = x.detach()
        if x.is_conj() or x.is_neg():
            x = x.resolve_conj().resolve_neg()
        return x
    raise TypeError(f"{name}: expected a torch.Tensor or numpy.ndarray, got {type(x).__module__}.{type(x).__name__}")


_TORCH_DTYPE_NAMES = {}  # torch.dtype -> its name, filled as dtypes are met


def dtype_name(x):
    """'float32', 'bool', ... for torch and NumPy alike."""
    if isinstance(x, np.ndarray):
        return x.dtype.name
    name = _TORCH_DTYPE_NAMES.get(x.dtype)
    if name is None:
        name = _TORCH_DTYPE_NAMES[x.dtype] = str(x.dtype).removeprefix("torch.")
    return name


def importable(x):
    """What the extension imports a prepared `x` from: a DLPack capsule for a torch tensor (its
    __dlpack__ method, which the extension would call otherwise, costs ~3 us a call in Python; the
    to_dlpack function 0.3), the array itself for NumPy. The capsule keeps the tensor alive."""
    if isinstance(x, np.ndarray) or x is None:
        return x
    return _torch().utils.dlpack.to_dlpack(x)


def allocator_like(x):
    """new_array(shape, dtype_name) -> (array, importable(array)), the array of the same kind as `x`."""
    if is_torch(x):
        torch = _torch()
        to_dlpack = torch.utils.dlpack.to_dlpack

        def new_tensor(shape, dtype):
            t = torch.empty(shape, dtype=getattr(torch, dtype))
            return t, to_dlpack(t)
        return new_tensor

    def new_array(shape, dtype):
        a = np.empty(shape, dtype=dtype)
        return a, a
    return new_array
