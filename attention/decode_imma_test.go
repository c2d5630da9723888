package attention_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/quant"
)

// codeStep bounds the error of a value coded in two int8 terms (decode_imma.glsl's twoTerms),
// relative to the largest magnitude m its scale s = m / 127 was taken from: x = value / s is
// within 1/2 of its first code a, and (x - a) * 254 within 1/2 of its second b, so the value is
// within s / 508 = m / 64516 of s (a + b / 254); the quotient's fp32 rounding (a division good to
// 2.5 ulp, and a product) adds a few ulps of 127, under 2^-21 m.
const codeStep = 1.0/64516 + 0x1p-21

// compareIMMA checks the outputs of the tensor-core kernel of c.kv (decode_int8_imma or
// decode_int4_imma) for case c against quant's float64 reference over the dequantized inputs,
// wantO and wantLSE: NaN exactly where the reference has it, elsewhere within the float kernels'
// tolerance (Tolerance of the largest output, LSETolerance) plus what the kernel's two-term codes
// may add, bounded per output from the reference's softmax weights w_j of the row's keys j:
//
//   - Queries: row q (scaled by the softmax scale) is coded with its largest magnitude M, so
//     each element within codeStep M. The integer products are exact, so score j is off by at
//     most codeStep M sum_d |k_jd| (K dequantized), plus the fp32 rounding of turning 254 hi + lo
//     into a float and scaling it by the row's and the key's scales, under
//     2^-20 sum_d |q_d k_jd|; the soft cap only shrinks differences. With every score the row
//     sees off by at most delta, each weight moves by a factor within e^(+-2 delta), and output
//     o_c = sum_j w_j v_jc by at most (e^(2 delta) - 1) sum_j w_j |v_jc|.
//   - Probabilities: in each tile T of 32 keys (from the sequence's key 0) the row's
//     p'_j = p_j vs_j (vs the V scale) are coded with its largest |p'_j|, so each within codeStep
//     of it; weighed by V's codes c_jc and normalized by the row's sum of p (the kernel's p are the
//     weights up to that sum, and e^(+-2 delta)), o_c moves by at most
//     e^(2 delta) codeStep sum_T max_{j in T} w_j |vs_j| sum_{j in T} |c_jc|.
//     Splitting the keys into chunks changes nothing: each chunk weighs its share of the same
//     weights.
//   - The logsumexp moves by at most delta.
//
// So the bound is about 2^-16 of the row's largest |q| (times |k|) and of each tile's largest
// w |vs| (times |c|), not a tolerance loosened to fit.
func (in *quantInputs) compareIMMA(t *testing.T, c quantCase, gotO, gotLSE []float32, wantO, wantLSE []float64) {
	t.Helper()
	p, hq, hk, d := in.p, c.Hq, c.Hk, c.D
	q := in.q // the queries as the kernel reads them: scaled, or FP8 and dequantized
	var err error
	if in.keys != nil {
		q, err = in.keys.ScaleQueries(q, hq)
		require.NoError(t, err)
	}
	if c.fp8 {
		qq, err := quant.Quantize(quant.E4M3, q, p.TotalQ(), hq, d)
		require.NoError(t, err)
		q = qq.Dequantize()
	}
	qw, kw := conformance.Widen(q), conformance.Widen(in.k.Dequantize())
	scale := float64(float32(p.EffectiveScale())) // the kernel's, in fp32
	bound := make([]float64, len(wantO))
	delta := make([]float64, p.TotalQ()*hq)
	for b := 0; b < p.Batch(); b++ {
		q0, lq := p.CuSeqlensQ[b], p.CuSeqlensQ[b+1]-p.CuSeqlensQ[b]
		k0, lk := p.CuSeqlensK[b], p.CuSeqlensK[b+1]-p.CuSeqlensK[b]
		for h := 0; h < hq; h++ {
			kh := h / (hq / hk)
			s, err := p.Scores(qw, kw, b, h)
			require.NoError(t, err)
			for i := 0; i < lq; i++ {
				row := (q0+i)*hq + h
				if len(wantO) > 0 && math.IsNaN(wantO[row*d]) {
					continue // NaN, as the kernel's must be
				}
				qr := qw[row*d:][:d]
				m := 0.0
				for _, x := range qr {
					m = math.Max(m, math.Abs(x*scale))
				}
				sr := s[i*lk:][:lk]
				top, dl := math.Inf(-1), 0.0
				for j, x := range sr {
					if math.IsInf(x, -1) {
						continue
					}
					top = math.Max(top, x)
					kr := kw[((k0+j)*hk+kh)*d:][:d]
					absK, absQK := 0.0, 0.0
					for e, y := range kr {
						absK += math.Abs(y)
						absQK += math.Abs(qr[e] * scale * y)
					}
					dl = math.Max(dl, codeStep*m*absK+0x1p-20*absQK)
				}
				if math.IsInf(top, -1) {
					continue // sees no key
				}
				delta[row] = dl
				w := make([]float64, lk)
				sum := 0.0
				for j, x := range sr {
					w[j] = math.Exp(x - top) // 0 where masked
					sum += w[j]
				}
				for j := range w {
					w[j] /= sum
				}
				grow := math.Exp(2 * dl)
				for ch := 0; ch < d; ch++ {
					qk, pv := 0.0, 0.0
					for t0 := 0; t0 < lk; t0 += 32 {
						peak, codes := 0.0, 0.0
						for j := t0; j < min(t0+32, lk); j++ {
							if w[j] == 0 {
								continue
							}
							tok := k0 + j
							vs := float64(in.v.Scale(tok, kh, ch))
							code := float64(in.v.Format.Value(in.v.Field(tok, kh, ch)))
							qk += w[j] * math.Abs(code*vs)
							peak = math.Max(peak, w[j]*math.Abs(vs))
							codes += math.Abs(code)
						}
						pv += peak * codes
					}
					bound[row*d+ch] = math.Expm1(2*dl)*qk + grow*codeStep*pv
				}
			}
		}
	}
	maxRef := 0.0
	for _, w := range wantO {
		if !math.IsNaN(w) {
			maxRef = math.Max(maxRef, math.Abs(w))
		}
	}
	tol := conformance.Tolerance(c.DType) * maxRef
	worst := 0.0 // the largest error over what is allowed
	for i, w := range wantO {
		g := float64(gotO[i])
		if math.IsNaN(w) || math.IsNaN(g) {
			require.True(t, math.IsNaN(w) && math.IsNaN(g), "o[%d] = %v, want %v (unwritten, or NaN leaked across rows)", i, g, w)
			continue
		}
		allowed := tol + bound[i]
		require.LessOrEqual(t, math.Abs(g-w), allowed, "o[%d] = %v, want %v: off by more than %.3g (%.3g the codes' bound)", i, g, w, allowed, bound[i])
		worst = math.Max(worst, math.Abs(g-w)/allowed)
	}
	for i, w := range wantLSE {
		if gotLSE == nil {
			break
		}
		g := float64(gotLSE[i])
		if math.IsNaN(w) || math.IsInf(w, 0) {
			require.True(t, g == w || math.IsNaN(w) && math.IsNaN(g), "lse[%d] = %v, want %v", i, g, w)
			continue
		}
		require.LessOrEqual(t, math.Abs(g-w), conformance.LSETolerance*math.Max(1, math.Abs(w))+delta[i], "lse[%d] = %v, want %v", i, g, w)
	}
	t.Logf("%s: largest error %.3g of what its codes and fp32 allow", immaKernel(c.kv), worst)
}
