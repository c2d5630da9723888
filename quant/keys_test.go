package quant

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// rope applies rotary embeddings in float64 to x, [tokens][heads][dim], token t at position t:
// channel pairs (j, j+dim/2), or (2j, 2j+1) if interleaved, rotated by t·10000^(-2j/dim).
func rope(x []float64, heads, dim int, interleaved bool) []float64 {
	y := make([]float64, len(x))
	for i := 0; i < len(x); i += dim {
		pos := float64(i / (heads * dim))
		for j := 0; j < dim/2; j++ {
			a, b := j, j+dim/2
			if interleaved {
				a, b = 2*j, 2*j+1
			}
			th := pos * math.Pow(10000, -2*float64(j)/float64(dim))
			c, s := math.Cos(th), math.Sin(th)
			y[i+a] = x[i+a]*c - x[i+b]*s
			y[i+b] = x[i+a]*s + x[i+b]*c
		}
	}
	return y
}

// outlierKeys returns pre-RoPE keys, [tokens][heads][dim], that look like an LLM's: each channel
// pair with its own spread (log-normal) and a few pairs per head an order of magnitude larger.
func outlierKeys(r *rand.Rand, tokens, heads, dim int, interleaved bool) []float64 {
	return keysWith(r, outlierSpread(r, heads, dim), tokens, heads, dim, interleaved)
}

// outlierSpread is the spread of each channel pair of outlierKeys, [heads][dim/2].
func outlierSpread(r *rand.Rand, heads, dim int) []float64 {
	spread := make([]float64, heads*dim/2)
	for i := range spread {
		spread[i] = math.Exp(0.5 * r.NormFloat64())
	}
	for h := 0; h < heads; h++ {
		for _, j := range r.Perm(dim / 2)[:3] {
			spread[h*dim/2+j] *= 12
		}
	}
	return spread
}

// keysWith returns Gaussian pre-RoPE keys whose channel pairs have the given spreads.
func keysWith(r *rand.Rand, spread []float64, tokens, heads, dim int, interleaved bool) []float64 {
	k := make([]float64, tokens*heads*dim)
	for i := range k {
		h, c := i/dim%heads, i%dim
		j := c % (dim / 2)
		if interleaved {
			j = c / 2
		}
		k[i] = spread[h*dim/2+j] * r.NormFloat64()
	}
	return k
}

func narrow(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

// Pair scales commute with RoPE; scaled queries and keys keep every dot product; the selected
// channels come with their partners; scaled calibration keys have pair norms <= Alpha and
// selected channels |k| <= Beta.
func TestCalibrateKeys(t *testing.T) {
	r := newRand(t)
	const tokens, heads, hq, dim = 200, 2, 6, 64
	for _, interleaved := range []bool{false, true} {
		cal := Calibration{Interleaved: interleaved}
		pre := outlierKeys(r, tokens, heads, dim, interleaved)
		post := rope(pre, heads, dim, interleaved)

		pairs, err := CalibrateKeys(narrow(post), tokens, heads, dim, Calibration{TopK: -1, Interleaved: interleaved})
		require.NoError(t, err)
		fromPre, err := CalibrateKeys(narrow(pre), tokens, heads, dim, Calibration{TopK: -1, Interleaved: interleaved})
		require.NoError(t, err)
		for i := range pairs.K { // the pair norm is the same before and after RoPE
			require.InEpsilon(t, fromPre.K[i], pairs.K[i], 1e-5)
		}
		scaled := make([]float64, len(pre))
		for i, v := range pre {
			scaled[i] = v * float64(pairs.K[(i/dim%heads)*dim+i%dim])
		}
		a, b := rope(scaled, heads, dim, interleaved), post
		for i := range a { // RoPE(s·k) = s·RoPE(k)
			s := float64(pairs.K[(i/dim%heads)*dim+i%dim])
			require.InDelta(t, s*b[i], a[i], 1e-9*math.Max(1, math.Abs(a[i])))
		}

		ks, err := CalibrateKeys(narrow(post), tokens, heads, dim, cal)
		require.NoError(t, err)
		k32 := narrow(post)
		ksc, err := ks.ScaleKeys(k32)
		require.NoError(t, err)
		for h := 0; h < heads; h++ {
			sel := ks.Selected[h]
			require.True(t, slices.IsSorted(sel))
			require.GreaterOrEqual(t, len(sel), 4)
			require.LessOrEqual(t, len(sel), 6)
			for _, c := range sel {
				require.Contains(t, sel, cal.partner(c, dim), "channel %d's partner", c)
			}
			// The three largest channels by max |k| are selected.
			chMax := make([]float64, dim)
			for i := h * dim; i < len(k32); i += heads * dim {
				for c := 0; c < dim; c++ {
					chMax[c] = math.Max(chMax[c], math.Abs(float64(k32[i+c])))
				}
			}
			order := make([]int, dim)
			for c := range order {
				order[c] = c
			}
			slices.SortStableFunc(order, func(a, b int) int { return -cmpF(chMax[a], chMax[b]) })
			for _, c := range order[:3] {
				require.Contains(t, sel, c)
			}
			// After scaling: selected channels reach at most Beta, pairs at most Alpha.
			for c := 0; c < dim; c++ {
				var m float64
				for i := h * dim; i < len(ksc); i += heads * dim {
					a := float64(ksc[i+c])
					if !slices.Contains(sel, c) {
						b := float64(ksc[i+cal.partner(c, dim)])
						a = math.Hypot(a, b)
					}
					m = math.Max(m, math.Abs(a))
				}
				require.InDelta(t, 1, m, 1e-6, "head %d channel %d", h, c)
			}
		}
		// (q/s)·(s·k) = q·k for every query head of the group.
		q := gaussian(r, 5*hq*dim, 1)
		qsc, err := ks.ScaleQueries(q, hq)
		require.NoError(t, err)
		for tq := 0; tq < 5; tq++ {
			for h := 0; h < hq; h++ {
				kh := h / (hq / heads)
				for tk := 0; tk < tokens; tk += 37 {
					var plain, both float64
					for c := 0; c < dim; c++ {
						plain += float64(q[(tq*hq+h)*dim+c]) * float64(k32[(tk*heads+kh)*dim+c])
						both += float64(qsc[(tq*hq+h)*dim+c]) * float64(ksc[(tk*heads+kh)*dim+c])
					}
					require.InDelta(t, plain, both, 1e-6*float64(dim)*(1+math.Abs(plain)))
				}
			}
		}
	}
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestCalibrateKeysEdges(t *testing.T) {
	const tokens, heads, dim = 4, 1, 8
	k := make([]float32, tokens*heads*dim)
	for i := range k {
		if i%dim != 1 && i%dim != 5 { // pair (1, 5) is always 0
			k[i] = float32(i%dim + 1)
		}
	}
	ks, err := CalibrateKeys(k, tokens, heads, dim, Calibration{TopK: -1})
	require.NoError(t, err)
	require.Equal(t, float32(1), ks.K[1])
	require.Equal(t, float32(1), ks.Q[5])
	require.Equal(t, float32(1/math.Hypot(1, 5)), ks.K[0])
	require.Empty(t, ks.Selected[0])
	ks, err = CalibrateKeys(k, tokens, heads, dim, Calibration{TopK: 1, NoPairs: true, Beta: 2})
	require.NoError(t, err)
	require.Equal(t, []int{3, 7}, ks.Selected[0]) // channel 7 (value 8) and its partner 3
	require.Equal(t, []float32{1, 1, 1, 0.5, 1, 1, 1, 0.25}, ks.K)
	require.Equal(t, []float32{1, 1, 1, 2, 1, 1, 1, 4}, ks.Q)

	k[3] = float32(math.NaN())
	_, err = CalibrateKeys(k, tokens, heads, dim, Calibration{})
	require.ErrorContains(t, err, "channel 3")
	_, err = CalibrateKeys(k[:7], 1, 1, 7, Calibration{})
	require.Error(t, err, "odd dim")
	_, err = ks.ScaleQueries(make([]float32, 8), 0)
	require.Error(t, err)
	_, err = ks.ScaleKeys(make([]float32, 9))
	require.Error(t, err)
}
