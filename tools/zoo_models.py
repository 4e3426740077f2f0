"""Classic ImageNet-era architectures for the model zoo, with deterministic random weights.

Layer shapes follow the published models (the Caffe BVLC releases for AlexNet and GoogLeNet,
torchvision for ResNet, MobileNet v2 and SqueezeNet), so parameter and MAC counts match the
papers: AlexNet 61.0M, VGG-16 138.4M, GoogLeNet 7.0M, ResNet-18 11.7M, ResNet-50 25.6M,
MobileNet v1 4.2M, MobileNet v2 3.5M, SqueezeNet 1.2M (BatchNorm running statistics add a
little where BatchNorm is used: it stays a separate node so folding it is a real test).
"""

from __future__ import annotations

from ..ir import Graph, Value
from .builder import NetBuilder
from .zoo import model


def _classifier(b: NetBuilder, x: Value, classes: int = 1000) -> Graph:
    return b.finish(b.g.op("softmax", b.fc(b.g.op("flatten", x, name="flatten"), classes, name="fc"),
                           name="prob", axis=1))


def _crb(b: NetBuilder, x: Value, out: int, k: int, stride: int = 1, group: int = 1, act: str = "relu",
         name: str | None = None) -> Value:
    """conv (no bias) -> batch_norm -> activation; act "relu6" is a clip to [0, 6], "none" skips it."""
    name = b.name("conv", name)
    y = b.bn(b.conv(x, out, k, stride=stride, pad=k // 2, group=group, bias=False, name=name), name=f"{name}/bn")
    if act == "relu6":
        return b.act(y, "clip", name=f"{name}/relu6", min=0.0, max=6.0)
    return y if act == "none" else b.act(y, act, name=f"{name}/relu")


@model("lenet")
def lenet(seed: int = 0, batch: int = 1) -> Graph:
    """LeNet (Caffe MNIST example): 28x28 grey input, 431K parameters."""
    b = NetBuilder("lenet", (batch, 1, 28, 28), seed)
    x = b.pool(b.conv(b.x, 20, 5, name="conv1"), "max", 2, 2, name="pool1")
    x = b.pool(b.conv(x, 50, 5, name="conv2"), "max", 2, 2, name="pool2")
    x = b.act(b.fc(x, 500, name="ip1"), name="relu1")
    return b.finish(b.g.op("softmax", b.fc(x, 10, name="ip2"), name="prob", axis=1))


@model("alexnet")
def alexnet(seed: int = 0, batch: int = 1) -> Graph:
    """AlexNet as released by BVLC (grouped conv2/4/5, LRN): 61.0M parameters at 224x224."""
    b = NetBuilder("alexnet", (batch, 3, 224, 224), seed)
    lrn = {"size": 5, "alpha": 1e-4, "beta": 0.75}
    x = b.act(b.conv(b.x, 96, 11, stride=4, name="conv1"), name="relu1")
    x = b.pool(b.g.op("lrn", x, name="norm1", **lrn), "max", 3, 2, ceil_mode=True, name="pool1")
    x = b.act(b.conv(x, 256, 5, pad=2, group=2, name="conv2"), name="relu2")
    x = b.pool(b.g.op("lrn", x, name="norm2", **lrn), "max", 3, 2, ceil_mode=True, name="pool2")
    x = b.act(b.conv(x, 384, 3, pad=1, name="conv3"), name="relu3")
    x = b.act(b.conv(x, 384, 3, pad=1, group=2, name="conv4"), name="relu4")
    x = b.act(b.conv(x, 256, 3, pad=1, group=2, name="conv5"), name="relu5")
    x = b.pool(x, "max", 3, 2, ceil_mode=True, name="pool5")
    for i in (6, 7):
        x = b.g.op("dropout", b.act(b.fc(x, 4096, name=f"fc{i}"), name=f"relu{i}"), name=f"drop{i}")
    return b.finish(b.g.op("softmax", b.fc(x, 1000, name="fc8"), name="prob", axis=1))


@model("vgg16")
def vgg16(seed: int = 0, batch: int = 1) -> Graph:
    """VGG-16 (configuration D): 138.4M parameters, 15.5 GMACs at 224x224."""
    b = NetBuilder("vgg16", (batch, 3, 224, 224), seed)
    x = b.x
    for stage, (width, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), start=1):
        for i in range(1, convs + 1):
            x = b.act(b.conv(x, width, 3, pad=1, name=f"conv{stage}_{i}"), name=f"relu{stage}_{i}")
        x = b.pool(x, "max", 2, 2, name=f"pool{stage}")
    for i in (6, 7):
        x = b.g.op("dropout", b.act(b.fc(x, 4096, name=f"fc{i}"), name=f"relu{i}"), name=f"drop{i}")
    return b.finish(b.g.op("softmax", b.fc(x, 1000, name="fc8"), name="prob", axis=1))


def _inception(b: NetBuilder, x: Value, name: str, c1: int, c3r: int, c3: int, c5r: int, c5: int,
               pp: int) -> Value:
    def cr(v: Value, out: int, k: int, suffix: str) -> Value:
        return b.act(b.conv(v, out, k, pad=k // 2, name=f"{name}/{suffix}"), name=f"{name}/relu_{suffix}")

    a = cr(x, c1, 1, "1x1")
    m = cr(cr(x, c3r, 1, "3x3_reduce"), c3, 3, "3x3")
    s = cr(cr(x, c5r, 1, "5x5_reduce"), c5, 5, "5x5")
    p = cr(b.pool(x, "max", 3, 1, pad=1, name=f"{name}/pool"), pp, 1, "pool_proj")
    return b.g.op("concat", a, m, s, p, name=f"{name}/output", axis=1)


@model("googlenet")
def googlenet(seed: int = 0, batch: int = 1) -> Graph:
    """GoogLeNet (Inception v1, BVLC release, no auxiliary heads, with LRN): 7.0M parameters."""
    b = NetBuilder("googlenet", (batch, 3, 224, 224), seed)
    lrn = {"size": 5, "alpha": 1e-4, "beta": 0.75}
    x = b.act(b.conv(b.x, 64, 7, stride=2, pad=3, name="conv1/7x7_s2"), name="conv1/relu")
    x = b.g.op("lrn", b.pool(x, "max", 3, 2, ceil_mode=True, name="pool1/3x3_s2"), name="pool1/norm1", **lrn)
    x = b.act(b.conv(x, 64, 1, name="conv2/3x3_reduce"), name="conv2/relu_reduce")
    x = b.act(b.conv(x, 192, 3, pad=1, name="conv2/3x3"), name="conv2/relu")
    x = b.pool(b.g.op("lrn", x, name="conv2/norm2", **lrn), "max", 3, 2, ceil_mode=True, name="pool2/3x3_s2")
    blocks = {"3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
              "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
              "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
              "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128)}
    for key, widths in blocks.items():
        x = _inception(b, x, f"inception_{key}", *widths)
        if key in ("3b", "4e"):
            x = b.pool(x, "max", 3, 2, ceil_mode=True, name=f"pool{key[0]}/3x3_s2")
    x = b.g.op("dropout", b.pool(x, "avg", 7, 1, name="pool5/7x7_s1"), name="pool5/drop_7x7_s1", ratio=0.4)
    return _classifier(b, x)


@model("squeezenet1_0")
def squeezenet1_0(seed: int = 0, batch: int = 1) -> Graph:
    """SqueezeNet 1.0: 1.25M parameters."""
    return _squeezenet("squeezenet1_0", seed, batch, (96, 7), (2, 5, 9))


@model("squeezenet1_1")
def squeezenet1_1(seed: int = 0, batch: int = 1) -> Graph:
    """SqueezeNet 1.1 (3x3 stem, earlier pooling): 1.24M parameters, 2.4x cheaper than 1.0."""
    return _squeezenet("squeezenet1_1", seed, batch, (64, 3), (2, 4, 6))


def _squeezenet(name: str, seed: int, batch: int, stem: tuple[int, int], pools_before: tuple[int, ...]) -> Graph:
    b = NetBuilder(name, (batch, 3, 224, 224), seed)
    x = b.act(b.conv(b.x, stem[0], stem[1], stride=2, name="conv1"), name="relu_conv1")
    fires = [(16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192), (64, 256), (64, 256)]
    for i, (squeeze, expand) in enumerate(fires, start=2):
        if i in pools_before:
            x = b.pool(x, "max", 3, 2, ceil_mode=True, name=f"pool{i - 1}")
        s = b.act(b.conv(x, squeeze, 1, name=f"fire{i}/squeeze1x1"), name=f"fire{i}/relu_squeeze1x1")
        e1 = b.act(b.conv(s, expand, 1, name=f"fire{i}/expand1x1"), name=f"fire{i}/relu_expand1x1")
        e3 = b.act(b.conv(s, expand, 3, pad=1, name=f"fire{i}/expand3x3"), name=f"fire{i}/relu_expand3x3")
        x = b.g.op("concat", e1, e3, name=f"fire{i}/concat", axis=1)
    x = b.g.op("dropout", x, name="drop9")
    x = b.act(b.conv(x, 1000, 1, name="conv10"), name="relu_conv10")
    x = b.g.op("flatten", b.g.op("global_avg_pool", x, name="pool10"), name="flatten")
    return b.finish(b.g.op("softmax", x, name="prob", axis=1))


def _basic_block(b: NetBuilder, x: Value, out: int, stride: int, name: str) -> Value:
    y = _crb(b, x, out, 3, stride, name=f"{name}/conv1")
    y = _crb(b, y, out, 3, act="none", name=f"{name}/conv2")
    if stride != 1 or x.type.shape[1] != out:
        x = _crb(b, x, out, 1, stride, act="none", name=f"{name}/downsample")
    return b.act(b.g.op("add", x, y, name=f"{name}/add"), name=f"{name}/relu")


def _bottleneck(b: NetBuilder, x: Value, width: int, stride: int, name: str) -> Value:
    y = _crb(b, x, width, 1, name=f"{name}/conv1")
    y = _crb(b, y, width, 3, stride, name=f"{name}/conv2")  # stride on the 3x3 (ResNet v1.5)
    y = _crb(b, y, width * 4, 1, act="none", name=f"{name}/conv3")
    if stride != 1 or x.type.shape[1] != width * 4:
        x = _crb(b, x, width * 4, 1, stride, act="none", name=f"{name}/downsample")
    return b.act(b.g.op("add", x, y, name=f"{name}/add"), name=f"{name}/relu")


def _resnet(name: str, seed: int, batch: int, blocks: tuple[int, ...], bottleneck: bool) -> Graph:
    b = NetBuilder(name, (batch, 3, 224, 224), seed)
    x = _crb(b, b.x, 64, 7, 2, name="conv1")
    x = b.pool(x, "max", 3, 2, pad=1, name="pool1")
    for stage, count in enumerate(blocks):
        width = 64 * 2**stage
        for i in range(count):
            stride = 2 if stage > 0 and i == 0 else 1
            block = _bottleneck if bottleneck else _basic_block
            x = block(b, x, width, stride, f"layer{stage + 1}.{i}")
    return _classifier(b, b.g.op("global_avg_pool", x, name="pool5"))


@model("resnet18")
def resnet18(seed: int = 0, batch: int = 1) -> Graph:
    """ResNet-18: 11.7M parameters, 1.8 GMACs."""
    return _resnet("resnet18", seed, batch, (2, 2, 2, 2), bottleneck=False)


@model("resnet50")
def resnet50(seed: int = 0, batch: int = 1) -> Graph:
    """ResNet-50 (v1.5): 25.6M parameters, 4.1 GMACs."""
    return _resnet("resnet50", seed, batch, (3, 4, 6, 3), bottleneck=True)


def mobilenet_v1_body(b: NetBuilder, x: Value) -> tuple[Value, Value]:
    """conv0 and the 13 depthwise-separable blocks (Caffe names conv0..conv13); returns (conv11, conv13)."""
    x = _crb(b, x, 32, 3, 2, name="conv0")
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    conv11 = x
    for i, (out, stride) in enumerate(plan, start=1):
        x = _crb(b, x, x.type.shape[1], 3, stride, group=x.type.shape[1], name=f"conv{i}/dw")
        x = _crb(b, x, out, 1, name=f"conv{i}")
        if i == 11:
            conv11 = x
    return conv11, x


@model("mobilenet_v1")
def mobilenet_v1(seed: int = 0, batch: int = 1) -> Graph:
    """MobileNet v1 (width 1.0): 4.2M parameters, 0.57 GMACs."""
    b = NetBuilder("mobilenet_v1", (batch, 3, 224, 224), seed)
    _, x = mobilenet_v1_body(b, b.x)
    return _classifier(b, b.g.op("global_avg_pool", x, name="pool6"))


@model("mobilenet_v2")
def mobilenet_v2(seed: int = 0, batch: int = 1) -> Graph:
    """MobileNet v2 (width 1.0): inverted residuals with ReLU6, 3.5M parameters, 0.3 GMACs."""
    b = NetBuilder("mobilenet_v2", (batch, 3, 224, 224), seed)
    x = _crb(b, b.x, 32, 3, 2, act="relu6", name="conv1")
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]
    k = 0
    for t, c, n, s in settings:
        for i in range(n):
            k += 1
            cin, stride = x.type.shape[1], s if i == 0 else 1
            y = x if t == 1 else _crb(b, x, cin * t, 1, act="relu6", name=f"block{k}/expand")
            y = _crb(b, y, y.type.shape[1], 3, stride, group=y.type.shape[1], act="relu6", name=f"block{k}/dw")
            y = _crb(b, y, c, 1, act="none", name=f"block{k}/project")
            x = b.g.op("add", x, y, name=f"block{k}/add") if stride == 1 and cin == c else y
    x = _crb(b, x, 1280, 1, act="relu6", name="conv_last")
    x = b.g.op("dropout", b.g.op("global_avg_pool", x, name="pool"), name="dropout", ratio=0.2)
    return _classifier(b, x)


@model("sphereface20")
def sphereface20(seed: int = 0, batch: int = 1) -> Graph:
    """SphereFace-20 face embedding: 112x96 input, PReLU everywhere, residual units, a 512-d feature."""
    b = NetBuilder("sphereface20", (batch, 3, 112, 96), seed)

    def cp(v: Value, out: int, stride: int, name: str) -> Value:
        y = b.conv(v, out, 3, stride=stride, pad=1, name=f"conv{name}")
        slope = b.g.add_const((0.25 + 0.05 * b.rng.standard_normal((out, 1, 1))).astype("float32"), f"relu{name}.slope")
        return b.g.op("prelu", y, slope, name=f"relu{name}")

    x = b.x
    for stage, (width, units) in enumerate(((64, 1), (128, 2), (256, 4), (512, 1)), start=1):
        x = cp(x, width, 2, f"{stage}_1")
        for u in range(units):
            i = 2 + 2 * u
            y = cp(cp(x, width, 1, f"{stage}_{i}"), width, 1, f"{stage}_{i + 1}")
            x = b.g.op("add", x, y, name=f"res{stage}_{i + 1}")
    return b.finish(b.fc(x, 512, name="fc5"))
