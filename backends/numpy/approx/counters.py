"""Operation counters of approximate execution: what was actually computed, per layer and knob.

Units: a multiply-accumulate (MAC) is two scalar operations (a multiply and an add); `overhead`
counts the knobs' own scalar operations (SPET's comparisons, SDSS's neighbour max/min/range tests
and interpolations, SFMA's feature means/variances, tests and mean x weight-sum products). So
    ops = 2 * macs + overhead,    dense_ops = 2 * dense_macs,    reduction = dense_ops / ops.
The skipped MACs are credited to one knob each, in evaluation order: an output SDSS interpolates
saves its whole dot product (sdss); of the outputs evaluated, the inputs SFMA approximates are
sfma's; of the exact inputs left, those SPET's early termination skips are spet's. Hence
    dense_macs = macs + skipped_sdss + skipped_sfma + skipped_spet.
Bias and activation epilogues are not counted (the same in both modes).
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class LayerCounts:
    """Counts accumulated over every run of one layer since the last reset."""

    dense_macs: int = 0
    macs: int = 0
    overhead: int = 0
    skipped_spet: int = 0
    skipped_sdss: int = 0
    skipped_sfma: int = 0
    neurons: int = 0  # outputs produced (N * O * H * W)
    terminated: int = 0  # outputs SPET predicted saturated
    interpolated: int = 0  # outputs SDSS interpolated
    approximated_maps: int = 0  # (image, output channel, input map) contributions SFMA approximated

    @property
    def ops(self) -> int:
        return 2 * self.macs + self.overhead

    @property
    def dense_ops(self) -> int:
        return 2 * self.dense_macs

    @property
    def reduction(self) -> float:
        """dense_ops / ops (1.0 for an exact layer)."""
        return self.dense_ops / self.ops if self.ops else 1.0

    def add(self, other: LayerCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int | float]:
        d: dict[str, int | float] = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(ops=self.ops, dense_ops=self.dense_ops, reduction=self.reduction)
        return d


def total(counts: dict[str, LayerCounts]) -> LayerCounts:
    """The sum over layers."""
    out = LayerCounts()
    for c in counts.values():
        out.add(c)
    return out
