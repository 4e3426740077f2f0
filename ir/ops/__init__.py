"""Op families; importing this package registers every op in `lpdc.ir.registry`."""

from . import activation, detection, elementwise, nn, norm, pool, quant, tensor  # noqa: F401
