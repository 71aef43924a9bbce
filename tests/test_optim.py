"""The optimizers against their papers' update rules, transcribed here in float64.

Adam is Algorithm 1 of Kingma and Ba (2015), written out below line by line, not
taken from the library. It runs with betas, eps and a learning rate that are not the
defaults (a kernel that hard-codes 0.9 or 0.999 fails), on gradients whose sizes span
four decades around eps (so where eps enters the denominator matters), with an entry
whose gradient is always 0 and one whole step of zero gradients.
"""

import numpy as np
import pytest

from vae_numpy import kernels as K
from vae_numpy.model import VAE, ModelConfig
from vae_numpy.optim import SGD, Adam

needs_numba = pytest.mark.skipif(not K.have_numba(), reason="numba is not installed")

LR, BETAS, EPS = 3e-3, (0.8, 0.99), 1e-4
STEPS = 20


def kingma_ba_adam(theta0: dict, gradients: list, lr, b1, b2, eps):
    """Algorithm 1 of Kingma and Ba (2015), in float64, one parameter array at a time.

    m_t = b1 m_{t-1} + (1 - b1) g_t;  v_t = b2 v_{t-1} + (1 - b2) g_t^2;
    mhat_t = m_t / (1 - b1^t);  vhat_t = v_t / (1 - b2^t);
    theta_t = theta_{t-1} - lr mhat_t / (sqrt(vhat_t) + eps).
    """
    theta = {k: np.array(v, dtype=np.float64) for k, v in theta0.items()}
    m = {k: np.zeros_like(v) for k, v in theta.items()}
    v = {k: np.zeros_like(th) for k, th in theta.items()}
    for t, g in enumerate(gradients, start=1):
        for k in theta:
            gk = np.asarray(g[k], dtype=np.float64)
            m[k] = b1 * m[k] + (1.0 - b1) * gk
            v[k] = b2 * v[k] + (1.0 - b2) * gk ** 2
            m_hat = m[k] / (1.0 - b1 ** t)
            v_hat = v[k] / (1.0 - b2 ** t)
            theta[k] = theta[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return theta, m, v


def random_gradients(shapes: dict, rng, dtype=np.float64) -> list:
    """STEPS gradient dicts: each entry has its own scale, 1e-6 to 1 (eps is 1e-4),
    and a sign and size that change from step to step; entry 0 of each array is always
    0, and step 5 is all zeros."""
    scales = {k: 10.0 ** rng.uniform(-6, 0, size=s) for k, s in shapes.items()}
    out = []
    for t in range(STEPS):
        g = {}
        for k, s in shapes.items():
            gk = rng.standard_normal(s) * scales[k] + 0.3 * scales[k]   # a drift, not just noise
            gk.reshape(-1)[0] = 0.0
            g[k] = (gk * (t != 5)).astype(dtype)
        out.append(g)
    return out


class SpyOnKernel:
    """Counts the calls to kernels.adam_update (the fused path) and passes them on."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = K.adam_update

        def spy(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(K, "adam_update", spy)


def test_plain_adam_is_kingma_and_ba_algorithm_1(rng, monkeypatch):
    spy = SpyOnKernel(monkeypatch)
    shapes = {"w": (6, 4), "b": (4,), "s": (1,)}
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    theta0 = {k: v.copy() for k, v in params.items()}
    grads = random_gradients(shapes, rng)
    opt = Adam(params, lr=LR, betas=BETAS, eps=EPS, fused=False)
    for g in grads:
        opt.step(g)
    theta, m, v = kingma_ba_adam(theta0, grads, LR, *BETAS, EPS)
    assert spy.calls == 0                                    # the plain loop, not the kernel
    for k in shapes:
        np.testing.assert_allclose(params[k], theta[k], rtol=1e-12, atol=1e-15, err_msg=k)
    state = opt.state_dict()
    assert int(state["t"]) == STEPS
    for k in shapes:
        np.testing.assert_allclose(state[f"m/{k}"], m[k], rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(state[f"v/{k}"], v[k], rtol=1e-12, atol=1e-300)
    # the entry whose gradient was always 0 has not moved: 0 / (0 + eps)
    assert params["w"][0, 0] == theta0["w"][0, 0]
    # and the parameters did move, by about lr per step: the comparison has teeth
    assert np.abs(params["w"] - theta0["w"]).max() > 5 * LR


SMALL = ModelConfig(input_dim=30, hidden_dims=(20,), latent_dim=3)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_adam_on_a_models_buffer_is_kingma_and_ba_algorithm_1(dtype, rng, monkeypatch):
    """The fused path updates ``model.flat`` in one pass: in float64 through
    ``kernels.adam_update_reference``, in float32 through the numba kernel.

    float32 tolerance: each of the 20 steps rounds p (half an ulp of |p| <= 0.6 here) and
    computes the step lr * mhat / (sqrt(vhat) + eps), of size up to lr, to a few ulp
    (1e-6 relative): at most 20 * (ulp(|p|) + 1e-6 * lr) apart.
    """
    spy = SpyOnKernel(monkeypatch)
    model = VAE(SMALL, rng=0, dtype=dtype, backend="numpy")
    theta0 = {k: p.copy() for k, p in model.params.items()}
    grads = random_gradients({k: p.shape for k, p in model.params.items()}, rng, dtype)
    opt = Adam(model.params, lr=LR, betas=BETAS, eps=EPS, fused=True)
    for g in grads:
        for k, gk in g.items():
            model.grads[k][...] = gk           # the gradients as views of model.grad_flat
        opt.step(model.grads)
    assert spy.calls == STEPS                  # every step took the fused path
    theta, m, v = kingma_ba_adam(theta0, grads, LR, *BETAS, EPS)
    for k, p in model.params.items():
        assert p.dtype == dtype
        if dtype == np.float64:
            np.testing.assert_allclose(p, theta[k], rtol=1e-12, atol=1e-15, err_msg=k)
        else:
            ulp = np.spacing(np.abs(theta[k]).astype(np.float32)).astype(np.float64)
            bound = STEPS * (ulp + 1e-6 * LR)
            err = np.abs(p - theta[k])
            assert np.all(err <= bound), f"{k}: {np.max(err / bound):.2f} x the bound"
    state = opt.state_dict()
    assert int(state["t"]) == STEPS
    mrtol = 1e-12 if dtype == np.float64 else 2e-6
    for k in model.params:
        scale = max(np.abs(g[k]).max() for g in grads)   # m, v: sums of terms of this size
        np.testing.assert_allclose(state[f"m/{k}"], m[k], rtol=mrtol, atol=mrtol * scale)
        np.testing.assert_allclose(state[f"v/{k}"], v[k], rtol=mrtol, atol=mrtol * scale ** 2)
    moved = max(np.abs(model.params[k] - theta0[k]).max() for k in model.params)
    assert moved > 5 * LR


def test_sgd_with_momentum_is_the_heavy_ball_rule(rng):
    """v_t = mu v_{t-1} + g_t;  theta_t = theta_{t-1} - lr v_t (PyTorch's form)."""
    shapes = {"w": (5, 3), "b": (3,)}
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    theta = {k: v.copy() for k, v in params.items()}
    velocity = {k: np.zeros(s) for k, s in shapes.items()}
    opt = SGD(params, lr=0.05, momentum=0.7)
    for _ in range(STEPS):
        g = {k: rng.standard_normal(s) for k, s in shapes.items()}
        opt.step(g)
        for k in shapes:
            velocity[k] = 0.7 * velocity[k] + g[k]
            theta[k] = theta[k] - 0.05 * velocity[k]
    for k in shapes:
        np.testing.assert_allclose(params[k], theta[k], rtol=1e-12, atol=1e-14)
