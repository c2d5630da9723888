package quant

import (
	"fmt"
	"math"

	"github.com/vkattn/vkattn/attention/reference"
)

// AttentionOptions say how the queries of Attention are prepared.
type AttentionOptions struct {
	// Scales, if not nil, are the RoPE-aware key scales K was quantized with (from
	// Scales.ScaleKeys of the keys); the queries are multiplied by Scales.Q.
	Scales *KeyScales
	// FP8Queries quantizes the (scaled) queries to E4M3 with one scale per (token, head) and
	// uses their dequantized values.
	FP8Queries bool
}

// Attention is the float64 oracle of attention over quantized keys and values: what a kernel
// that dequantizes K and V (and the queries, with FP8Queries) computes, without its rounding.
// q is float32 [TotalQ][Hq][D], after RoPE; k and v are quantized [TotalK][Hk][D] and
// [TotalK][Hk][DV]. The queries are scaled (a float32 multiplication) and quantized as o says,
// K and V are dequantized exactly, and reference.Forward computes the rest in float64.
func Attention(p reference.Params, q []float32, k, v *Tensor, o AttentionOptions) (out, lse []float64, err error) {
	if err := p.Validate(); err != nil {
		return nil, nil, err
	}
	if k == nil || v == nil {
		return nil, nil, fmt.Errorf("quant: k and v must not be nil")
	}
	if k.Tokens != p.TotalK() || k.Heads != p.Hk || k.Dim != p.D {
		return nil, nil, fmt.Errorf("quant: k is [%d][%d][%d], want [%d][%d][%d]", k.Tokens, k.Heads, k.Dim, p.TotalK(), p.Hk, p.D)
	}
	if v.Tokens != p.TotalK() || v.Heads != p.Hk || v.Dim != p.HeadDimV() {
		return nil, nil, fmt.Errorf("quant: v is [%d][%d][%d], want [%d][%d][%d]", v.Tokens, v.Heads, v.Dim, p.TotalK(), p.Hk, p.HeadDimV())
	}
	if len(q) != p.TotalQ()*p.Hq*p.D {
		return nil, nil, fmt.Errorf("quant: q has %d values, want %d", len(q), p.TotalQ()*p.Hq*p.D)
	}
	if o.Scales != nil {
		if o.Scales.Heads != p.Hk || o.Scales.Dim != p.D {
			return nil, nil, fmt.Errorf("quant: key scales for %d heads of %d, want %d of %d", o.Scales.Heads, o.Scales.Dim, p.Hk, p.D)
		}
		if q, err = o.Scales.ScaleQueries(q, p.Hq); err != nil {
			return nil, nil, err
		}
	}
	if o.FP8Queries {
		qq, err := Quantize(E4M3, q, p.TotalQ(), p.Hq, p.D)
		if err != nil {
			return nil, nil, err
		}
		q = qq.Dequantize()
	}
	return reference.Forward(p, widen(q), widen(k.Dequantize()), widen(v.Dequantize()))
}

func widen(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// CosineSimilarity is sum(a·b) / sqrt(sum a² · sum b²) over all elements (1 where both are 0).
func CosineSimilarity(a, b []float64) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += a[i] * b[i]
		aa += a[i] * a[i]
		bb += b[i] * b[i]
	}
	if aa == 0 && bb == 0 {
		return 1
	}
	return ab / math.Sqrt(aa*bb)
}

// RelativeL1 is sum|got - want| / sum|want| (0 where both are 0).
func RelativeL1(got, want []float64) float64 {
	var d, w float64
	for i := range want {
		d += math.Abs(got[i] - want[i])
		w += math.Abs(want[i])
	}
	if d == 0 {
		return 0
	}
	return d / w
}
