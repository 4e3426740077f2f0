"""Hand-written forward/backward passes and Adam for the digits CNN (training only; inference runs the IR).

Shapes: x [N,1,8,8] -> conv1 3x3 pad 1 (8) -> relu -> maxpool 2 -> conv2 3x3 pad 1 (16) -> relu ->
maxpool 2 -> flatten 64 -> fc 10 -> softmax cross-entropy. Convolutions are im2col matmuls in
float64 so training is deterministic for a seed on any BLAS.
"""

from __future__ import annotations

import numpy as np

Params = dict[str, np.ndarray]


def _im2col(x: np.ndarray) -> np.ndarray:
    """[N,C,H,W] -> [N, C*9, H*W] columns of 3x3 windows with zero padding 1."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([xp[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=2)
    return cols.reshape(n, c * 9, h * w)


def _col2im(cols: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Adjoint of _im2col: scatter-add the column gradients back onto the image."""
    n, c, h, w = shape
    cols = cols.reshape(n, c, 9, h, w)
    xp = np.zeros((n, c, h + 2, w + 2))
    for k in range(9):
        i, j = divmod(k, 3)
        xp[:, :, i:i + h, j:j + w] += cols[:, :, k]
    return xp[:, :, 1:-1, 1:-1]


def _pool(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2 max pool and the argmax mask for the backward pass (first maximum wins ties)."""
    n, c, h, w = x.shape
    win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    arg = win.argmax(axis=-1)
    return np.take_along_axis(win, arg[..., None], -1)[..., 0], arg


def _unpool(dy: np.ndarray, arg: np.ndarray) -> np.ndarray:
    n, c, h, w = dy.shape
    win = np.zeros((n, c, h, w, 4))
    np.put_along_axis(win, arg[..., None], dy[..., None], -1)
    return win.reshape(n, c, h, w, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h * 2, w * 2)


def _forward(p: Params, x: np.ndarray) -> tuple[np.ndarray, list]:
    tape = []
    for name in ("conv1", "conv2"):
        w, b = p[f"{name}.w"], p[f"{name}.b"]
        cols = _im2col(x)
        z = (w.reshape(w.shape[0], -1) @ cols).reshape(x.shape[0], w.shape[0], *x.shape[2:]) + b[:, None, None]
        a = np.maximum(z, 0)
        y, arg = _pool(a)
        tape.append((name, x.shape, cols, z, arg))
        x = y
    flat = x.reshape(len(x), -1)
    tape.append(("fc", flat))
    return flat @ p["fc.w"].T + p["fc.b"], tape


def _backward(p: Params, logits: np.ndarray, labels: np.ndarray, tape: list) -> Params:
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    prob[np.arange(len(labels)), labels] -= 1
    dlogits = prob / len(labels)
    flat = tape[-1][1]
    grads = {"fc.w": dlogits.T @ flat, "fc.b": dlogits.sum(axis=0)}
    dx = (dlogits @ p["fc.w"]).reshape(len(labels), 16, 2, 2)
    for name, x_shape, cols, z, arg in reversed(tape[:-1]):
        w = p[f"{name}.w"]
        dz = _unpool(dx, arg) * (z > 0)
        dz2 = dz.reshape(dz.shape[0], dz.shape[1], -1)
        dz_flat = dz2.transpose(1, 0, 2).reshape(dz2.shape[1], -1)  # [O, N*P]: one BLAS call, not einsum
        cols_flat = cols.transpose(1, 0, 2).reshape(cols.shape[1], -1)
        grads[f"{name}.w"] = (dz_flat @ cols_flat.T).reshape(w.shape)
        grads[f"{name}.b"] = dz_flat.sum(axis=1)
        dx = _col2im(np.matmul(w.reshape(w.shape[0], -1).T, dz2), x_shape)
    return grads


def _init(rng: np.random.Generator) -> Params:
    def he(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)

    return {"conv1.w": he((8, 1, 3, 3), 9), "conv1.b": np.zeros(8),
            "conv2.w": he((16, 8, 3, 3), 72), "conv2.b": np.zeros(16),
            "fc.w": he((10, 64), 64), "fc.b": np.zeros(10)}


def train(x: np.ndarray, y: np.ndarray, seed: int = 0, epochs: int = 30, batch: int = 32,
          lr: float = 0.01) -> dict[str, np.ndarray]:
    """Minibatch Adam on softmax cross-entropy; returns float32 weights by parameter name."""
    rng = np.random.default_rng(seed)
    p = _init(rng)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v2 = {k: np.zeros_like(v) for k, v in p.items()}
    x = x.astype(np.float64)
    step = 0
    for epoch in range(epochs):
        rate = lr * 0.5 * (1 + np.cos(np.pi * epoch / epochs))  # cosine decay settles the weights
        for idx in np.array_split(rng.permutation(len(x)), max(1, len(x) // batch)):
            logits, tape = _forward(p, x[idx])
            grads = _backward(p, logits, y[idx], tape)
            step += 1
            for k, g in grads.items():
                m[k] = 0.9 * m[k] + 0.1 * g
                v2[k] = 0.999 * v2[k] + 0.001 * g * g
                p[k] -= rate * (m[k] / (1 - 0.9 ** step)) / (np.sqrt(v2[k] / (1 - 0.999 ** step)) + 1e-8)
    return {k: v.astype(np.float32) for k, v in p.items()}
