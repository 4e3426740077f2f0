"""The "meta_schedule" measurement kind through the real worker and campaign: a tiny conv2d tuned
with a few trials, recorded with its trace's hash (the `found` column), numerically equal to
NumPy's conv, not remeasured."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("tvm")

from lpdc.autotune.campaign import Campaign, CampaignOptions  # noqa: E402
from lpdc.autotune.db import Database  # noqa: E402
from lpdc.autotune.keys import Signature  # noqa: E402
from lpdc.autotune.measure import LocalRunner  # noqa: E402
from lpdc.autotune.ms_kind import KIND, kernel_path, ms_target, ms_work  # noqa: E402
from lpdc.autotune.tvm_kind import FUNC  # noqa: E402
from lpdc.backends.numpy.im2col import conv2d_im2col  # noqa: E402
from lpdc.backends.numpy.primitives import ConvSpec  # noqa: E402

TRIALS = 4  # each trial is a build + run; 4 keep the test near 40 s on two shared cores


def test_meta_schedule_campaign_records_tunes_and_skips(tmp_path):
    import tvm

    spec = ConvSpec(1, 16, 14, 14, 16, 3, 3, pad=(1, 1, 1, 1))
    sig = Signature.from_spec(spec)
    work = [ms_work(sig, "x86", TRIALS)]
    cache = tmp_path / "kernels"
    with Database(tmp_path / "tune.db") as db:
        report = Campaign(db, LocalRunner(target="x86", cache_dir=str(cache)), CampaignOptions(timeout_s=30)).run(work)
        assert dict(report.outcomes) == {"ok": 1}, db.measurements()[0].error
        (m,) = db.measurements()
        assert m.kind == KIND and m.choice == work[0].choice
        assert m.choice.config_dict() == {"schedule": KIND, "trials": TRIALS, "seed": 0}
        assert math.isfinite(m.median_s) and m.median_s > 0 and m.spread_s >= 0 and m.repeats == 5

        # The row names what was measured (`found`): the hash and file of the tuned trace, beside the kernel.
        path = kernel_path(sig, work[0].choice, ms_target("x86"), cache)
        meta = json.loads(path.with_suffix(".json").read_text())
        trace_file = path.with_suffix(".json").name
        assert m.error == "" and m.found == {"trace_sha256": meta["sha256"], "trace_file": trace_file, "trials": TRIALS}
        assert isinstance(meta["trace"], list) and meta["trace"] and meta["trials"] == TRIALS

        # The tuned kernel computes the convolution.
        rng = np.random.default_rng(1)
        x = rng.standard_normal((1, 16, 14, 14)).astype("float32")
        w = rng.standard_normal((16, 16, 3, 3)).astype("float32")
        y = tvm.runtime.empty((1, 16, 14, 14), "float32", tvm.cpu())
        tvm.runtime.load_module(str(path))[FUNC](tvm.runtime.tensor(x), tvm.runtime.tensor(w), y)
        ref = conv2d_im2col(x, w, spec.stride, spec.pad, spec.dilation, 1)
        np.testing.assert_allclose(y.numpy(), ref, rtol=1e-5, atol=1e-4)

        # A second campaign finds the row and measures (and tunes) nothing.
        stamp = path.stat().st_mtime_ns
        again = Campaign(db, LocalRunner(target="x86", cache_dir=str(cache))).run(work)
        assert (again.already, again.measured) == (1, 0)
        assert db.count() == 1 and path.stat().st_mtime_ns == stamp
