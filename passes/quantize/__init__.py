"""Post-training quantization: calibration, dynamic fixed point, int8 with integer kernels, k-means
codebooks, and the sensitivity-analysis pipeline (layer analysis, then network space exploration).

`quantize(graph, calibration, scheme)` is the entry point (exported as `lpdc.quantize`); the
pipeline lives in `sensitivity.py` (phase 1) and `explore.py` (phase 2).
"""

from .apply import quantize, quantize_with
from .calibrate import Calibration, calibrate
from .config import QuantConfig, VarSpec, quantizable_layers

__all__ = ["quantize", "quantize_with", "Calibration", "calibrate", "QuantConfig", "VarSpec", "quantizable_layers"]
