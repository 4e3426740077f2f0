"""Selection passes: choose each node's primitive, layout and device (PBQP)."""
