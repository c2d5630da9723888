package quant

import (
	"fmt"
	"math"
	"sort"
)

// Calibration sets how CalibrateKeys fits the RoPE-aware key scales.
type Calibration struct {
	// Alpha is the largest pair norm that the pre-RoPE scaling gives each channel pair; 0 means 1.
	Alpha float64
	// Beta is the largest magnitude that the post-RoPE scaling gives each selected channel;
	// 0 means 1.
	Beta float64
	// TopK is the number of channels per KV head given a post-RoPE scale of their own (the TopK
	// largest by max |k|, each with its RoPE partner); 0 means 3, negative none.
	TopK int
	// NoPairs leaves out the pre-RoPE pair scaling (channels not selected keep scale 1).
	NoPairs bool
	// Interleaved pairs channels (2j, 2j+1), as GPT-J style RoPE does; by default channel j is
	// paired with j + dim/2 (rotate-half, as Llama and GPT-NeoX do).
	Interleaved bool
}

// KeyScales are the per-channel scales of RoPE-aware key quantization: keys are multiplied by K
// before they are quantized, queries by Q, so that q·k is unchanged (up to float32 rounding)
// while the channels of the keys have comparable ranges.
type KeyScales struct {
	Heads, Dim int // KV heads and head dim
	// K is [Heads][Dim]: key channel c of KV head h is multiplied by K[h·Dim+c].
	K []float32
	// Q is [Heads][Dim], float32(1/K): query channel c of every query head of KV head h's group
	// is multiplied by Q[h·Dim+c].
	Q []float32
	// Selected lists, per KV head, the channels with a post-RoPE scale, ascending.
	Selected [][]int
}

// partner is the channel RoPE rotates together with channel c.
func (o Calibration) partner(c, dim int) int {
	if o.Interleaved {
		return c ^ 1
	}
	if c < dim/2 {
		return c + dim/2
	}
	return c - dim/2
}

// CalibrateKeys fits the key scales of FireQ's RoPE-aware quantization from sample keys,
// token-major [tokens][heads][dim], after RoPE (as attention takes them).
//
// Pre-RoPE pair scales: for each KV head and RoPE pair (j, j'), r = the largest pair norm
// sqrt(k_j² + k_j'²) over the tokens and s = Alpha/r on both channels. A rotation keeps the
// pair norm and commutes with scaling both channels of its pair alike, so r is the same before
// and after RoPE and the scale can be applied to post-RoPE keys, or folded into the key and
// query projections. Post-RoPE top-k: per KV head, the TopK channels of largest max |k| (ties to
// the lower channel) and their partners get s = Beta / max |k| of that channel instead. A scale
// whose statistic is 0 (a channel or pair that is always 0) is 1. Scales are computed in float64
// and rounded to float32, K and Q alike.
//
// Keys with NaN or infinities are an error: calibration data must be finite.
func CalibrateKeys(keys []float32, tokens, heads, dim int, o Calibration) (*KeyScales, error) {
	if tokens <= 0 || heads <= 0 || dim <= 0 || dim%2 != 0 {
		return nil, fmt.Errorf("quant: calibration needs tokens, heads > 0 and an even dim, got %d, %d, %d", tokens, heads, dim)
	}
	if len(keys) != tokens*heads*dim {
		return nil, fmt.Errorf("quant: %d calibration keys for [%d][%d][%d]", len(keys), tokens, heads, dim)
	}
	for i, v := range keys {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("quant: calibration key %d (token %d, head %d, channel %d) is %v",
				i, i/(heads*dim), i/dim%heads, i%dim, v)
		}
	}
	alpha, beta, topK := o.Alpha, o.Beta, o.TopK
	if alpha == 0 {
		alpha = 1
	}
	if beta == 0 {
		beta = 1
	}
	if topK == 0 {
		topK = 3
	}
	topK = min(max(topK, 0), dim)
	ks := &KeyScales{Heads: heads, Dim: dim, K: make([]float32, heads*dim), Q: make([]float32, heads*dim),
		Selected: make([][]int, heads)}
	chMax := make([]float64, dim)   // max |k_c|
	pairMax := make([]float64, dim) // max pair norm, at both channels of the pair
	s := make([]float64, dim)
	for h := 0; h < heads; h++ {
		clear(chMax)
		clear(pairMax)
		for t := 0; t < tokens; t++ {
			row := keys[(t*heads+h)*dim:][:dim]
			for c, v := range row {
				a := float64(v)
				chMax[c] = math.Max(chMax[c], math.Abs(a))
				b := float64(row[o.partner(c, dim)])
				pairMax[c] = math.Max(pairMax[c], math.Sqrt(a*a+b*b))
			}
		}
		for c := range s {
			s[c] = 1
			if !o.NoPairs && pairMax[c] > 0 {
				s[c] = alpha / pairMax[c]
			}
		}
		order := make([]int, dim)
		for c := range order {
			order[c] = c
		}
		sort.SliceStable(order, func(i, j int) bool { return chMax[order[i]] > chMax[order[j]] })
		sel := map[int]bool{}
		for _, c := range order[:topK] {
			sel[c], sel[o.partner(c, dim)] = true, true
		}
		for c := 0; c < dim; c++ {
			if !sel[c] {
				continue
			}
			ks.Selected[h] = append(ks.Selected[h], c)
			s[c] = 1
			if chMax[c] > 0 {
				s[c] = beta / chMax[c]
			}
		}
		for c, v := range s {
			ks.K[h*dim+c] = float32(v)
			ks.Q[h*dim+c] = float32(1 / v)
		}
	}
	return ks, nil
}

// ScaleKeys returns k, [tokens][Heads][Dim], with channel c of KV head h multiplied by
// K[h·Dim+c] (a float32 multiplication).
func (s *KeyScales) ScaleKeys(k []float32) ([]float32, error) {
	return s.scale(k, s.Heads, s.K, "keys")
}

// ScaleQueries returns q, [tokens][hq][Dim] with hq a multiple of Heads, with channel c of
// query head h multiplied by Q[(h / (hq/Heads))·Dim+c] (a float32 multiplication).
func (s *KeyScales) ScaleQueries(q []float32, hq int) ([]float32, error) {
	return s.scale(q, hq, s.Q, "queries")
}

func (s *KeyScales) scale(x []float32, heads int, by []float32, what string) ([]float32, error) {
	if heads <= 0 || heads%s.Heads != 0 || len(x)%(heads*s.Dim) != 0 {
		return nil, fmt.Errorf("quant: %d %s with %d heads of %d do not fit scales for %d KV heads",
			len(x), what, heads, s.Dim, s.Heads)
	}
	group := heads / s.Heads
	out := make([]float32, len(x))
	for i, v := range x {
		h := i / s.Dim % heads / group
		out[i] = v * by[h*s.Dim+i%s.Dim]
	}
	return out, nil
}
