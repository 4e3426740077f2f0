"""Approximate execution with DyVEDeep's dynamic effort knobs (SPET, SDSS, SFMA) on the NumPy backend.

The knobs are a side table (`EffortConfig`: layer name -> `KnobSettings`), tuned per model by
`lpdc.passes.effort.tune_effort`; `ApproxExecutable(graph, config)` runs them and counts the MACs
actually performed (`LayerCounts`). See knobs.py for the knobs' meaning.
"""

from .counters import LayerCounts, total
from .executable import ApproxExecutable
from .knobs import EffortConfig, KnobSettings, from_json, load_config, save_config, to_json

__all__ = ["ApproxExecutable", "EffortConfig", "KnobSettings", "LayerCounts", "from_json", "load_config",
           "save_config", "to_json", "total"]
