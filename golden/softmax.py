"""Single-pass (online) softmax in base 2, bit-exact: the definition of ``hw/softmax.py``.

For one row ``x_0 .. x_{n-1}`` the unit keeps an integer running maximum ``m`` and a running sum
``s`` of ``2^(z - m)`` where ``z = x * log2(e)``; when the maximum grows by ``d`` the sum is
shifted right by ``d`` (no multiplier). After the row, one reciprocal ``R = 1/s`` is computed and
the probabilities are ``p = 2^(z - m) * R``. The pair ``{m, R}`` is also returned per row so a
consumer (attention ``A.V``) can fuse the normalisation: ``p ~= 2^(z - m) * R / 2^RF``.

Number formats (all from :class:`moeaccel.config.SoftmaxConfig`; ``IF = input_frac_bits``,
``EF = exp_frac_bits``, ``SF = sum_frac_bits``, ``RF = recip_frac_bits``, ``PF = prob_frac_bits``,
``E = exp_table_entries = 2^IX``, ``P = EF - IX``)
-----------------------------------------------------------------------------------------------
* logit ``x_q``: signed ``input_bits``, ``IF`` fraction bits;
* ``L = round(log2(e) * 2^EF)``, the constant multiplier;
* ``z = shift_round(x_q * L, IF, half_up)``: signed, ``EF`` fraction bits (:func:`Formats.z_bits`);
* ``fl = z >> EF`` (floor, the integer part), ``f = z mod 2^EF`` (the fraction), split into the
  table index ``i = f >> P`` and the interpolation position ``r = f mod 2^P``;
* ``t = 2^f`` in ``[1, 2)``, unsigned ``EF + 1`` bits with ``EF`` fraction bits, from a table of
  ``E`` words ``(T_i, D_i)``, ``T_i = round(2^(i/E) * 2^EF)``, ``D_i = T_{i+1} - T_i``::

      t = T_i + shift_round(D_i * r, P, half_up)

* running max ``m``: the integer ``max(fl)`` so far (signed, ``fl_bits``);
* running sum ``s``: unsigned, ``SF`` fraction bits, ``< 2 n`` (:func:`Formats.sum_bits`).
  Element term and update (all right shifts truncate; ``>>`` of ``a << b`` is exact)::

      e = (t << max(SF - EF, 0)) >> (max(m - fl, 0) + max(EF - SF, 0))   # 2^(z - m_new)
      s = (s >> max(fl - m, 0)) + e;   m = max(m, fl)                      # first element: m = fl

* reciprocal ``R = floor(2^(RF + SF) / s)``: unsigned ``RF + 1`` bits, ``RF`` fraction bits
  (``s >= 1`` because the maximum element contributes ``t >= 1`` unshifted, so ``R <= 1``);
* probability ``p = min(shift_round((t * R) >> (m - fl), EF + RF - PF, half_up), 2^PF)``:
  unsigned ``PF + 1`` bits, ``PF`` fraction bits. (Truncating by ``m - fl`` then rounding by
  the constant equals rounding the whole shift, so this is one round-half-up of ``t*R/2^...``.)

Accuracy (default config, measured by :func:`accuracy` over 1000 rows each of 16..256 logits
with std 1 and 3, against float64 softmax of the same quantised logits): max abs error on
probabilities 6.6e-5 (std 3, dominated by the truncation of the many tiny terms of long rows
into the sum, hence ``SF = 20``; with ``SF = 16`` it is 9.4e-4) and 2.1e-5 (std 1); asserted
``<= TARGET_MAX_ABS_ERR = 5e-4`` by ``tests/golden/test_softmax.py``. The probabilities of a
row sum to 1 within :func:`sum_error_bound` ``= n * 2^-(PF+1) + 1e-4`` (output rounding plus
the approximation).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from golden.fixed import ArrayLike, IntArray, as_int, dequantise, quantise, shift_round, smax, smin
from moeaccel.config import DesignConfig, SoftmaxConfig

FloatArray = npt.NDArray[np.float64]

#: the accuracy target: max abs probability error against float64 softmax
TARGET_MAX_ABS_ERR = 5e-4
#: row lengths and logit standard deviations :func:`accuracy` measures
ACCURACY_LENGTHS = (16, 32, 64, 128, 256)
ACCURACY_STDS = (1.0, 3.0)


@dataclass(frozen=True)
class Formats:
    """Every width and constant of the datapath, derived once from the config (``hw`` uses it)."""

    cfg: SoftmaxConfig

    @property
    def index_bits(self) -> int:
        """Table index bits ``IX`` (``exp_table_entries = 2^IX``)."""
        return self.cfg.exp_table_entries.bit_length() - 1

    @property
    def position_bits(self) -> int:
        """Interpolation position bits ``P = EF - IX``."""
        return self.cfg.exp_frac_bits - self.index_bits

    @property
    def log2e(self) -> int:
        """``log2(e)`` with ``EF`` fraction bits."""
        return int(quantise(math.log2(math.e), self.cfg.exp_frac_bits, self.cfg.exp_frac_bits + 2))

    @property
    def z_bits(self) -> int:
        """Signed width of ``z`` (``|x * log2 e| < 2^(input_bits - IF)``)."""
        c = self.cfg
        return c.input_bits - c.input_frac_bits + c.exp_frac_bits + 1

    @property
    def fl_bits(self) -> int:
        """Signed width of the integer exponent ``fl`` and of the row max ``m``."""
        return self.z_bits - self.cfg.exp_frac_bits

    @property
    def t_bits(self) -> int:
        """Unsigned width of ``t = 2^f`` in ``[1, 2)``."""
        return self.cfg.exp_frac_bits + 1

    @property
    def sum_bits(self) -> int:
        """Unsigned width of the running sum (``< 2 * max_row_length``)."""
        return self.cfg.sum_frac_bits + 1 + (self.cfg.max_row_length - 1).bit_length()

    @property
    def recip_bits(self) -> int:
        """Unsigned width of ``R = 1/s <= 1``."""
        return self.cfg.recip_frac_bits + 1

    @property
    def prob_bits(self) -> int:
        """Unsigned width of a probability ``<= 1``."""
        return self.cfg.prob_frac_bits + 1

    @property
    def prob_shift(self) -> int:
        """Constant rounding shift from ``t * R`` to a probability."""
        c = self.cfg
        return c.exp_frac_bits + c.recip_frac_bits - c.prob_frac_bits

    @property
    def sum_left(self) -> int:
        """Constant left shift of ``t`` into the sum's format (``max(SF - EF, 0)``)."""
        return max(self.cfg.sum_frac_bits - self.cfg.exp_frac_bits, 0)

    @property
    def sum_right(self) -> int:
        """Constant right shift of ``t`` into the sum's format (``max(EF - SF, 0)``)."""
        return max(self.cfg.exp_frac_bits - self.cfg.sum_frac_bits, 0)


@dataclass(frozen=True)
class SoftmaxResult:
    """Probabilities ``probs_q`` (``[..., n]``, ``PF`` fraction bits) and per row (``[...]``):
    the integer base-2 max ``max_q``, the reciprocal ``recip_q`` (``RF`` fraction bits) and
    the final sum ``sum_q`` (``SF`` fraction bits)."""

    probs_q: IntArray
    max_q: IntArray
    recip_q: IntArray
    sum_q: IntArray


@functools.lru_cache(maxsize=None)
def _table(cfg: SoftmaxConfig) -> tuple[tuple[int, int], ...]:
    e, ef = cfg.exp_table_entries, cfg.exp_frac_bits
    points = quantise(2.0 ** (np.arange(e + 1) / e), ef, ef + 3)
    words = tuple((int(points[i]), int(points[i + 1] - points[i])) for i in range(e))
    return words


def exp2_table(cfg: SoftmaxConfig) -> IntArray:
    """The table ROM: ``exp_table_entries`` rows of ``(T_i, D_i)`` (see the module docstring)."""
    return np.array(_table(cfg), dtype=np.int64)


def table_field_bits(cfg: SoftmaxConfig) -> tuple[int, int]:
    """Unsigned widths of the ``T`` and ``D`` fields of a table word."""
    tab = exp2_table(cfg)
    return int(tab[:, 0].max()).bit_length(), int(tab[:, 1].max()).bit_length()


def check_logits(x_q: ArrayLike, cfg: SoftmaxConfig) -> IntArray:
    """``x_q`` as int64, refusing values outside the signed ``input_bits`` range."""
    x = as_int(x_q)
    if x.size and (x.min() < smin(cfg.input_bits) or x.max() > smax(cfg.input_bits)):
        raise ValueError(f"softmax: logits outside the signed {cfg.input_bits}-bit input range")
    return x


def exponent_parts(x_q: ArrayLike, cfg: SoftmaxConfig) -> tuple[IntArray, IntArray]:
    """Per element ``(fl, t)``: ``x * log2(e) ~= fl + log2(t / 2^EF)`` (integer part, ``2^frac``)."""
    fm = Formats(cfg)
    z = shift_round(check_logits(x_q, cfg) * fm.log2e, cfg.input_frac_bits, "half_up")
    fl = z >> cfg.exp_frac_bits
    f = z & ((1 << cfg.exp_frac_bits) - 1)
    index, position = f >> fm.position_bits, f & ((1 << fm.position_bits) - 1)
    tab = exp2_table(cfg)
    t = tab[index, 0] + shift_round(tab[index, 1] * position, fm.position_bits, "half_up")
    return fl, t


def _rshift(v: IntArray, amount: IntArray) -> IntArray:
    """Truncating right shift of non-negative ``v`` by non-negative per-element ``amount``."""
    return v >> np.minimum(amount, 63)


def softmax(logits_q: ArrayLike, cfg: SoftmaxConfig | DesignConfig) -> SoftmaxResult:
    """Bit-exact softmax over the last axis of ``logits_q`` (signed ``input_bits`` integers with
    ``input_frac_bits`` fraction bits); rows are 1..``max_row_length`` long."""
    if isinstance(cfg, DesignConfig):
        cfg = cfg.hardware.softmax
    fm = Formats(cfg)
    x = check_logits(logits_q, cfg)
    if x.ndim == 0 or not 1 <= x.shape[-1] <= cfg.max_row_length:
        raise ValueError(f"softmax: row length must be 1..{cfg.max_row_length}, got shape {x.shape}")
    fl, t = exponent_parts(x, cfg)
    m, s = fl[..., 0], np.zeros(x.shape[:-1], dtype=np.int64)
    for j in range(x.shape[-1]):
        e = _rshift(t[..., j] << fm.sum_left, np.maximum(m - fl[..., j], 0) + fm.sum_right)
        s = _rshift(s, np.maximum(fl[..., j] - m, 0)) + e
        m = np.maximum(m, fl[..., j])
    recip = (1 << (cfg.recip_frac_bits + cfg.sum_frac_bits)) // s
    scaled = _rshift(t * recip[..., None], m[..., None] - fl)
    probs = np.minimum(shift_round(scaled, fm.prob_shift, "half_up"), 1 << cfg.prob_frac_bits)
    return SoftmaxResult(probs_q=probs, max_q=m, recip_q=recip, sum_q=s)


# ----------------------------------------------------------------------------------------------
# Float references and accuracy
# ----------------------------------------------------------------------------------------------
def softmax_float(x: ArrayLike) -> FloatArray:
    """Exact float64 softmax over the last axis."""
    v = np.asarray(x, dtype=np.float64)
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def quantise_logits(x: ArrayLike, cfg: SoftmaxConfig) -> IntArray:
    """Float logits to the input format (round half up, saturate)."""
    return quantise(x, cfg.input_frac_bits, cfg.input_bits)


def softmax_quantised_float(x: ArrayLike, cfg: SoftmaxConfig | DesignConfig) -> FloatArray:
    """Float logits in, float probabilities out, through the bit-exact datapath."""
    if isinstance(cfg, DesignConfig):
        cfg = cfg.hardware.softmax
    return dequantise(softmax(quantise_logits(x, cfg), cfg).probs_q, cfg.prob_frac_bits)


def max_abs_error(cfg: SoftmaxConfig, rng: np.random.Generator, rows: int, length: int,
                  std: float) -> float:
    """Max abs probability error over ``rows`` random rows (normal logits of ``std``) against
    float64 softmax of the same quantised logits."""
    x_q = quantise_logits(rng.normal(0.0, std, size=(rows, length)), cfg)
    exact = softmax_float(dequantise(x_q, cfg.input_frac_bits))
    got = dequantise(softmax(x_q, cfg).probs_q, cfg.prob_frac_bits)
    return float(np.abs(got - exact).max())


def sum_error_bound(cfg: SoftmaxConfig, length: int) -> float:
    """Bound on ``|sum(p) - 1|`` for a row of ``length``: half an output LSB per element plus the
    approximation's share."""
    return length * 2.0 ** -(cfg.prob_frac_bits + 1) + 1e-4


def accuracy(cfg: DesignConfig, seed: int = 0, rows: int = 1000) -> dict[str, float]:
    """Max abs probability error of the softmax for rows of 16..256 logits (capped at
    ``max_row_length``) with std 1 and std 3, against float64 softmax of the same quantised
    logits; overall and per std."""
    sm = cfg.hardware.softmax
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    for std in ACCURACY_STDS:
        errs = [max_abs_error(sm, rng, rows, n, std)
                for n in ACCURACY_LENGTHS if n <= sm.max_row_length]
        out[f"softmax_max_abs_err_std{std:g}"] = max(errs)
    out["softmax_max_abs_err"] = max(out.values())
    return out
