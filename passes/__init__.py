"""Graph passes, the PassManager and primitive selection."""
