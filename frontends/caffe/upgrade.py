"""Bring any Caffe net to the current form, as Caffe's upgrade_proto.cpp does, then filter by phase.

Order (caffe-format.md section 4): V0 padding layers folded into the conv/pool that follows them;
V0 layers to V1; V1 layers to V2 (`layer`, string types, ParamSpec); legacy `input` +
`input_dim`/`input_shape` to one `Input` layer named "input". `filter_phase` then keeps the
layers a TEST-phase net contains (NetStateRule include/exclude).
"""

from __future__ import annotations

from typing import Any

from ...errors import LpdcParseError, LpdcUnsupportedError
from .schema import enum_name, is_repeated, new
from .tables import V0_TO_V1, V1_TO_V2


def upgrade_net(net: Any, source: str) -> Any:
    """A V2 NetParameter (layers in `layer`, inputs as an Input layer); `net` is left unchanged."""
    if len(net.layer) and len(net.layers):
        raise LpdcParseError("the net mixes `layer` (current) and `layers` (V1) blocks; Caffe refuses this",
                             where=source)
    out = new("NetParameter")
    out.CopyFrom(net)
    if any(v1.HasField("layer") for v1 in out.layers):
        _upgrade_v0(out, source)
    if len(out.layers):
        for v1 in out.layers:
            out.layer.add().CopyFrom(_v1_to_v2(v1, source))
        del out.layers[:]
    _upgrade_inputs(out, source)
    return out


# ---- V0 -> V1 --------------------------------------------------------------------------------
def _upgrade_v0(net: Any, source: str) -> None:
    """Fold `padding` layers into their consumers, then turn every V0 layer into a V1 layer."""
    last_writer: dict[str, Any] = {}
    kept: list[Any] = []
    for v1 in net.layers:
        v0 = v1.layer
        if v0.type != "padding":
            kept.append(v1)
        for j, bottom in enumerate(v1.bottom):
            src = last_writer.get(bottom)
            if src is None or src.layer.type != "padding":
                continue
            if v0.type not in ("conv", "pool") or len(v1.bottom) != 1 or len(src.bottom) != 1:
                raise LpdcUnsupportedError(f"padding layer '{src.layer.name}' feeds a {v0.type!r} layer; only a "
                                           "single-input conv or pool may follow one",
                                           where=f"{source}: layer '{v0.name}'")
            v0.pad = src.layer.pad
            v1.bottom[j] = src.bottom[0]
        for top in v1.top:
            last_writer[top] = v1
    upgraded = [_v0_to_v1(v1, source) for v1 in kept]
    del net.layers[:]
    for v1 in upgraded:
        net.layers.add().CopyFrom(v1)


def _v0_to_v1(old: Any, source: str) -> Any:
    v0 = old.layer
    where = f"{source}: layer '{v0.name}'"
    if v0.type not in V0_TO_V1:
        raise LpdcUnsupportedError(f"unknown V0 layer type {v0.type!r} (field `type`)", where=where)
    v1 = new("V1LayerParameter", name=v0.name or old.name)
    v1.bottom.extend(old.bottom)
    v1.top.extend(old.top)
    v1.include.extend(old.include)
    v1.exclude.extend(old.exclude)
    v1.type = v1.DESCRIPTOR.enum_types_by_name["LayerType"].values_by_name[V0_TO_V1[v0.type]].number
    v1.blobs.extend(list(v0.blobs) + list(old.blobs))
    v1.blobs_lr.extend(list(v0.blobs_lr) + list(old.blobs_lr))
    v1.weight_decay.extend(list(v0.weight_decay) + list(old.weight_decay))
    _move_v0_params(v0, v1, where)
    return v1


def _move_v0_params(v0: Any, v1: Any, where: str) -> None:
    """Move each set V0 field into the V1 sub-message its layer type uses (UpgradeV0LayerParameter)."""
    t = v0.type
    conv, ip, pool = v1.convolution_param, v1.inner_product_param, v1.pooling_param
    targets = {
        "num_output": {"conv": (conv, "num_output"), "innerproduct": (ip, "num_output")},
        "biasterm": {"conv": (conv, "bias_term"), "innerproduct": (ip, "bias_term")},
        "weight_filler": {"conv": (conv, "weight_filler"), "innerproduct": (ip, "weight_filler")},
        "bias_filler": {"conv": (conv, "bias_filler"), "innerproduct": (ip, "bias_filler")},
        "pad": {"conv": (conv, "pad"), "pool": (pool, "pad")},
        "kernelsize": {"conv": (conv, "kernel_size"), "pool": (pool, "kernel_size")},
        "group": {"conv": (conv, "group")},
        "stride": {"conv": (conv, "stride"), "pool": (pool, "stride")},
        "pool": {"pool": (pool, "pool")},
        "dropout_ratio": {"dropout": (v1.dropout_param, "dropout_ratio")},
        "local_size": {"lrn": (v1.lrn_param, "local_size")},
        "alpha": {"lrn": (v1.lrn_param, "alpha")},
        "beta": {"lrn": (v1.lrn_param, "beta")},
        "k": {"lrn": (v1.lrn_param, "k")},
        "concat_dim": {"concat": (v1.concat_param, "concat_dim")},
        "source": {"data": (v1.data_param, "source")},
        "batchsize": {"data": (v1.data_param, "batch_size")},
        "rand_skip": {"data": (v1.data_param, "rand_skip")},
        "scale": {"data": (v1.transform_param, "scale")},
        "meanfile": {"data": (v1.transform_param, "mean_file")},
        "cropsize": {"data": (v1.transform_param, "crop_size")},
        "mirror": {"data": (v1.transform_param, "mirror")},
    }
    for fd, value in v0.ListFields():
        if fd.name in ("name", "type", "blobs", "blobs_lr", "weight_decay"):
            continue
        target = targets.get(fd.name, {}).get(t)
        if target is None and t in _V0_DATA_TYPES:
            continue  # data-source settings of data layers that become graph inputs anyway
        if target is None:
            raise LpdcUnsupportedError(f"V0 field `{fd.name}` does not apply to a {t!r} layer", where=where)
        msg, name = target
        if fd.name == "pool":
            value = enum_name(v0, "pool")
        _assign(msg, name, value)


_V0_DATA_TYPES = ("data", "images", "window_data", "hdf5_data", "hdf5_output")


def _assign(msg: Any, name: str, value: Any) -> None:
    fd = msg.DESCRIPTOR.fields_by_name[name]
    if fd.enum_type is not None and isinstance(value, str):
        value = fd.enum_type.values_by_name[value].number
    if fd.message_type is not None:
        getattr(msg, name).CopyFrom(value)
    elif is_repeated(fd):
        getattr(msg, name).append(value)
    else:
        setattr(msg, name, value)


# ---- V1 -> V2 --------------------------------------------------------------------------------
_V1_ONLY = {"layer", "type", "blobs_lr", "weight_decay", "param", "blob_share_mode"}


def _v1_to_v2(v1: Any, source: str) -> Any:
    """Same name, bottoms, tops, rules, blobs and *_param messages; enum type to string; ParamSpecs."""
    layer = new("LayerParameter")
    v2_fields = layer.DESCRIPTOR.fields_by_name
    for fd, value in v1.ListFields():
        if fd.name in _V1_ONLY:
            continue
        if fd.name not in v2_fields:
            raise LpdcUnsupportedError(f"V1 field `{fd.name}` has no current equivalent",
                                       where=f"{source}: layer '{v1.name}'")
        if is_repeated(fd):
            getattr(layer, fd.name).extend(value)
        elif fd.message_type is not None:
            getattr(layer, fd.name).CopyFrom(value)
        else:
            setattr(layer, fd.name, value)
    type_name = enum_name(v1, "type")
    layer.type = V1_TO_V2.get(type_name, type_name)
    n = max(len(v1.blobs_lr), len(v1.weight_decay), len(v1.param), len(v1.blob_share_mode))
    for i in range(n):
        spec = layer.param.add()
        if i < len(v1.param):
            spec.name = v1.param[i]
        if i < len(v1.blob_share_mode):
            spec.share_mode = v1.blob_share_mode[i]
        if i < len(v1.blobs_lr):
            spec.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            spec.decay_mult = v1.weight_decay[i]
    return layer


# ---- legacy inputs ---------------------------------------------------------------------------
def _upgrade_inputs(net: Any, source: str) -> None:
    """`input` + `input_dim`/`input_shape` -> an Input layer named "input" in front; bare inputs dropped."""
    names = list(net.input)
    if net.input_dim or net.input_shape:
        shapes = _legacy_input_shapes(net, names, source)
        layer = new("LayerParameter", name="input", type="Input")
        layer.top.extend(names)
        for dims in shapes:
            layer.input_param.shape.add().dim.extend(dims)
        existing = list(net.layer)
        del net.layer[:]
        net.layer.add().CopyFrom(layer)
        net.layer.extend(existing)
    del net.input[:]
    del net.input_dim[:]
    del net.input_shape[:]


def _legacy_input_shapes(net: Any, names: list[str], source: str) -> list[list[int]]:
    if net.input_shape:
        if len(net.input_shape) != len(names):
            raise LpdcParseError(f"{len(names)} `input` names but {len(net.input_shape)} `input_shape` blocks",
                                 where=source)
        return [list(s.dim) for s in net.input_shape]
    dims = list(net.input_dim)
    if len(dims) != 4 * len(names):
        raise LpdcParseError(f"`input_dim` needs 4 values per `input` ({4 * len(names)}), got {len(dims)}",
                             where=source)
    return [dims[4 * i:4 * i + 4] for i in range(len(names))]


# ---- phase filtering -------------------------------------------------------------------------
def filter_phase(net: Any, phase: str = "TEST") -> list[Any]:
    """The layers a net in `phase` contains (Caffe's Net::FilterNet with StateMeetsRule)."""
    state_level = net.state.level if net.HasField("state") else 0
    stages = set(net.state.stage) if net.HasField("state") else set()
    phase_number = 1 if phase == "TEST" else 0

    def meets(rule: Any) -> bool:
        if rule.HasField("phase") and rule.phase != phase_number:
            return False
        if rule.HasField("min_level") and state_level < rule.min_level:
            return False
        if rule.HasField("max_level") and state_level > rule.max_level:
            return False
        return all(s in stages for s in rule.stage) and not any(s in stages for s in rule.not_stage)

    kept = []
    for layer in net.layer:
        included = not layer.include
        if included and any(meets(r) for r in layer.exclude):
            included = False
        if not included and any(meets(r) for r in layer.include):
            included = True
        if included:
            kept.append(layer)
    return kept
