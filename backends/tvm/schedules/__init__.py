"""Schedule templates for the TVM backend: x86_conv (conv / depthwise / FC register tiles, also used
for AArch64 NEON with 4-lane knobs) and generic (light ops on CPU; dlight fallback on GPU)."""
