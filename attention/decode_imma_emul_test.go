package attention_test

import (
	"math"
	"testing"

	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/quant"
)

// TestIMMABoundOnEmulation: the arithmetic of decode_imma.glsl, emulated on the CPU in fp32
// (emulateIMMA), meets compareIMMA's bound on every case TestDecodeQuantized gives its INT8 and
// INT4 kernels, at a few seeds. So the bound holds for the kernels' method, and a GPU that misses
// it has a bug. Runs anywhere: no device.
func TestIMMABoundOnEmulation(t *testing.T) {
	for _, kv := range []quant.Format{quant.Int8, quant.Int4} {
		for _, c := range quantDecodeCases(kv, devices.TierCoopMat, true) {
			t.Run(c.String(), func(t *testing.T) {
				for s := uint64(1); s <= 3; s++ {
					in := c.draw(t, conformance.NewRand(s))
					wantO, wantLSE := in.want(t, c)
					gotO, gotLSE := in.emulateIMMA(c)
					if c.NoLSE {
						gotLSE = nil
					}
					in.compareIMMA(t, c, gotO, gotLSE, wantO, wantLSE)
				}
			})
		}
	}
}

// twoTerms is decode_imma.glsl's: x's codes a and b, joined as 254 a + b.
func twoTerms(x float32) int64 {
	a := math.Max(-127, math.Min(127, math.Round(float64(x))))
	b := math.Max(-127, math.Min(127, math.Round(float64((x-float32(a))*254))))
	return 254*int64(a) + int64(b)
}

// emulateIMMA is decode_int8_imma or decode_int4_imma (c.kv) on the inputs, one chunk, in fp32
// as the kernel computes (sums in another order): two-term queries with a scale a row, exact
// integer scores over the K codes (INT4's as the int8 bytes the kernel stages), the lazily raised
// maximum, two-term p' = p * V scale with a scale a row and tile of 32 keys, the element-wise
// path for a tile with a non-finite V scale; one scale group a row, as the kernels take.
func (in *quantInputs) emulateIMMA(c quantCase) (o, lse []float32) {
	p, hq, hk, d := in.p, c.Hq, c.Hk, c.D
	q := in.q
	if in.keys != nil {
		q, _ = in.keys.ScaleQueries(q, hq)
	}
	if c.fp8 {
		qq, _ := quant.Quantize(quant.E4M3, q, p.TotalQ(), hq, d)
		q = qq.Dequantize()
	}
	scale := float32(p.EffectiveScale())
	negInf := float32(math.Inf(-1))
	code := func(x *quant.Tensor, tok, h, ch int) int64 { return int64(x.Format.Value(x.Field(tok, h, ch))) }
	o, lse = make([]float32, p.TotalQ()*hq*d), make([]float32, p.TotalQ()*hq)
	for b := 0; b < p.Batch(); b++ {
		q0, lq := p.CuSeqlensQ[b], p.CuSeqlensQ[b+1]-p.CuSeqlensQ[b]
		k0, lk := p.CuSeqlensK[b], p.CuSeqlensK[b+1]-p.CuSeqlensK[b]
		for h := 0; h < hq; h++ {
			kh := h / (hq / hk)
			for i := 0; i < lq; i++ {
				row := (q0+i)*hq + h
				qs, mx := make([]float32, d), float32(0)
				for e := range qs {
					qs[e] = q[row*d+e] * scale
					mx = max(mx, float32(math.Abs(float64(qs[e]))))
				}
				inv := float32(0)
				if mx > 0 {
					inv = 127 / mx
				}
				qc := make([]int64, d)
				for e := range qs {
					qc[e] = twoTerms(qs[e] * inv)
				}
				m, l, acc := negInf, float32(0), make([]float32, d)
				for t0 := 0; t0 < lk; t0 += 32 {
					n := min(32, lk-t0)
					x, tileMax, nan := make([]float32, n), negInf, false
					for j := range x {
						x[j] = negInf
						if !p.Visible(i, t0+j, lq, lk) {
							continue
						}
						dot := int64(0)
						for e := range qc {
							dot += qc[e] * code(in.k, k0+t0+j, kh, e)
						}
						x[j] = float32(dot) * (mx / 127 / 254) * in.k.Scale(k0+t0+j, kh, 0)
						if p.Softcap > 0 {
							x[j] = float32(float64(p.Softcap) * math.Tanh(float64(x[j]/float32(p.Softcap))))
						}
						nan = nan || math.IsNaN(float64(x[j]))
						tileMax = max(tileMax, x[j])
					}
					alpha := float32(1)
					if nan || tileMax > m+8 { // raiseMaxLazily
						next := tileMax
						if nan {
							next = float32(math.NaN())
						}
						if m != negInf {
							alpha = float32(math.Exp(float64(m - next)))
						}
						m = next
					}
					pr, vs := make([]float32, n), make([]float32, n)
					sum, pm, elementWise := float32(0), float32(0), false
					for j := range pr {
						if m != negInf {
							pr[j] = float32(math.Exp(float64(x[j] - m)))
						}
						vs[j] = in.v.Scale(k0+t0+j, kh, 0)
						elementWise = elementWise || !(math.Abs(float64(vs[j])) < 1e30)
						sum += pr[j]
						pm = max(pm, float32(math.Abs(float64(pr[j]*vs[j]))))
					}
					l = l*alpha + sum
					for e := range acc {
						acc[e] *= alpha
					}
					pc, pinv := make([]int64, n), float32(0)
					if pm > 0 {
						pinv = 127 / pm
					}
					for j := range pc {
						pc[j] = twoTerms(pr[j] * vs[j] * pinv)
					}
					for e := range acc {
						if elementWise {
							for j := range pr {
								if pr[j] != 0 {
									acc[e] += pr[j] * (float32(code(in.v, k0+t0+j, kh, e)) * vs[j])
								}
							}
							continue
						}
						dot := int64(0)
						for j := range pc {
							dot += pc[j] * code(in.v, k0+t0+j, kh, e)
						}
						acc[e] += float32(dot) * (pm / 127 / 254)
					}
				}
				invL := float32(0)
				if l != 0 {
					invL = 1 / l
				}
				for e := range acc {
					o[row*d+e] = acc[e] * invL
				}
				lse[row] = negInf
				if l != 0 {
					lse[row] = m + float32(math.Log(float64(l)))
				}
			}
		}
	}
	return o, lse
}
