package attention_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/quant"
)

// calibratedKeyScales fits RoPE-aware key scales to random keys [64][heads][dim] (quant.CalibrateKeys)
// and uploads their K as an f32 tensor [heads, dim].
func calibratedKeyScales(t *testing.T, e *attention.Engine, r *rand.Rand, heads, dim int) (*quant.KeyScales, *memory.Tensor) {
	t.Helper()
	const tokens = 64
	ks, err := quant.CalibrateKeys(normals(r, tokens*heads*dim), tokens, heads, dim, quant.Calibration{Alpha: 2, Beta: 3})
	require.NoError(t, err)
	return ks, upload(t, e, memory.F32, ks.K, heads, dim)
}

// TestQuantizeScaledMatchesCPU: with QuantizeOptions.Scales (key scales from quant.CalibrateKeys),
// for Int8 and Int4 (and E4M3) over f32, f16 and bf16 inputs of every group kind, the device's
// codes and scales are quant.Quantize(f, ks.ScaleKeys(x)) bit for bit, from QuantizeIntoWith into
// poisoned outputs, from QuantizeWith over [B, L, H, D] and over strided inputs.
func TestQuantizeScaledMatchesCPU(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	r := replayedRand(t, 0x9a21)
	shapes := [][3]int{{7, 3, 64}, {5, 2, 80}, {9, 2, 128}, {3, 2, 256}}
	for _, f := range quantizeFormats {
		for _, dt := range []memory.DType{memory.F32, memory.F16, memory.BF16} {
			for _, sh := range shapes {
				tokens, heads, dim := sh[0], sh[1], sh[2]
				t.Run(fmt.Sprintf("%v/%v/%dx%dx%d", f, dt, tokens, heads, dim), func(t *testing.T) {
					ks, kt := calibratedKeyScales(t, e, r, heads, dim)
					x := quantizeInput(r, f, dt, tokens*heads, dim)
					scaled, err := ks.ScaleKeys(x)
					require.NoError(t, err)
					want, err := quant.Quantize(f, scaled, tokens, heads, dim)
					require.NoError(t, err)
					plain, err := quant.Quantize(f, x, tokens, heads, dim)
					require.NoError(t, err)
					require.NotEqual(t, plain.WordBytes(), want.WordBytes(), "the scales change nothing")
					out := poisonedQuantized(t, e, f, tokens, heads, dim)
					xt := upload(t, e, dt, x, tokens, heads, dim)
					require.NoError(t, e.QuantizeIntoWith(ctx, out, xt, attention.QuantizeOptions{Scales: kt}))
					requireSameQuantized(t, want, out)
					// Unscaled on the same input: quant.Quantize of x itself.
					require.NoError(t, e.QuantizeIntoWith(ctx, out, xt, attention.QuantizeOptions{}))
					requireSameQuantized(t, plain, out)
				})
			}
		}
	}
	for _, f := range []quant.Format{quant.Int8, quant.Int4} {
		t.Run(fmt.Sprintf("layouts/%v", f), func(t *testing.T) {
			// Dense [2, 3, 2, 128], the scales at an offset of a larger tensor.
			ks, _ := calibratedKeyScales(t, e, r, 2, 128)
			big := upload(t, e, memory.F32, append(make([]float32, 5), ks.K...), 5+len(ks.K))
			kt := view(t, big, []int{2, 128}, []int{128, 1}, 5)
			x := quantizeInput(r, f, memory.F32, 12, 128)
			scaled, err := ks.ScaleKeys(x)
			require.NoError(t, err)
			want, err := quant.Quantize(f, scaled, 6, 2, 128)
			require.NoError(t, err)
			got, err := e.QuantizeWith(ctx, f, upload(t, e, memory.F32, x, 2, 3, 2, 128), attention.QuantizeOptions{Scales: kt})
			require.NoError(t, err)
			t.Cleanup(got.Close)
			require.Equal(t, []int{2, 3, 2, 128}, got.Shape())
			requireSameQuantized(t, want, got)

			// Strided: [5, 3, 64] in rows of 72 from element 8 (the padding NaN, never read).
			const tokens, heads, dim, pad = 5, 3, 64, 8
			ks, kt = calibratedKeyScales(t, e, r, heads, dim)
			x = quantizeInput(r, f, memory.BF16, tokens*heads, dim)
			xv := nanPadded(t, e, memory.BF16, x, tokens, heads, dim, pad)
			scaled, err = ks.ScaleKeys(x)
			require.NoError(t, err)
			want, err = quant.Quantize(f, scaled, tokens, heads, dim)
			require.NoError(t, err)
			got, err = e.QuantizeWith(ctx, f, xv, attention.QuantizeOptions{Scales: kt})
			require.NoError(t, err)
			t.Cleanup(got.Close)
			requireSameQuantized(t, want, got)
		})
	}
}

// TestQuantizeScaledBadInputs: QuantizeOptions.Scales of the wrong type, shape or layout, closed
// or another engine's, or overlapping the outputs, is refused with an error naming it; nothing
// is written or left allocated.
func TestQuantizeScaledBadInputs(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	x := newTensor(t, e, memory.F32, 3, 2, 64)
	f16 := newTensor(t, e, memory.F16, 2, 64)
	heads := newTensor(t, e, memory.F32, 3, 64)
	flat := newTensor(t, e, memory.F32, 128)
	wide := newTensor(t, e, memory.F32, 2, 128)
	closed := newTensor(t, e, memory.F32, 2, 64)
	closed.Close()
	e2 := secondEngine(t)
	foreign, err := e2.NewTensor(memory.F32, 2, 64)
	require.NoError(t, err)
	t.Cleanup(foreign.Close)
	before := liveStats(e)
	for _, c := range []struct {
		name string
		s    *memory.Tensor
		want string
	}{
		{"dtype", f16, "QuantizeOptions.Scales must be a contiguous f32 tensor of shape [2 64] (x's heads, head dim), got f16 [2 64]"},
		{"heads", heads, "QuantizeOptions.Scales must be a contiguous f32 tensor of shape [2 64] (x's heads, head dim), got f32 [3 64]"},
		{"rank", flat, "got f32 [128]"},
		{"strided", view(t, wide, []int{2, 64}, []int{128, 1}, 0), "got f32 [2 64] strides [128 1]"},
		{"closed", closed, "QuantizeOptions.Scales: " + memory.ErrClosed.Error()},
		{"foreign", foreign, "QuantizeOptions.Scales: " + memory.ErrForeign.Error()},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := e.QuantizeWith(ctx, quant.Int8, x, attention.QuantizeOptions{Scales: c.s})
			require.Nil(t, got)
			require.ErrorContains(t, err, "attention: Quantize: ")
			require.ErrorContains(t, err, c.want)
			out := poisonedQuantized(t, e, quant.Int8, 3, 2, 64)
			err = e.QuantizeIntoWith(ctx, out, x, attention.QuantizeOptions{Scales: c.s})
			require.ErrorContains(t, err, "attention: QuantizeInto: ")
			require.ErrorContains(t, err, c.want)
			for i, v := range download(t, out.Codes) {
				require.Equal(t, uint32(conformance.Poison), math.Float32bits(v), "code word %d was written", i)
			}
			out.Close()
		})
	}
	require.Equal(t, before, liveStats(e), "a refused QuantizeWith left something allocated")
	// Scales inside the codes' buffer.
	codes := newTensor(t, e, memory.F32, 3*2*16+128)
	out := &attention.Quantized{Format: quant.Int8, Codes: view(t, codes, []int{3, 2, 16}, []int{32, 16, 1}, 0),
		Scales: newTensor(t, e, memory.BF16, 3, 2, 1)}
	err = e.QuantizeIntoWith(ctx, out, x, attention.QuantizeOptions{Scales: view(t, codes, []int{2, 64}, []int{64, 1}, 90)})
	require.ErrorContains(t, err, "attention: QuantizeInto: out.Codes overlaps QuantizeOptions.Scales")
}

// TestQuantizedKVCacheKeyScales grows Int8 and Int4 caches of f32 and f16 keys and values with
// key scales (quant.CalibrateKeys) token by token, in the sparse and the paged layout: the views
// hold quant.Quantize(f, ks.ScaleKeys(k)) and quant.Quantize(f, v), and DecodeQuantized over
// them with QueryScales = ks.Q equals, bit for bit, DecodeQuantized over the dense scaled and
// quantized K and V. Bad key scales are refused at construction; closed ones at append.
func TestQuantizedKVCacheKeyScales(t *testing.T) {
	ctx := context.Background()
	const hq, hk, d, n = 4, 2, 64, 23
	for _, f := range []quant.Format{quant.Int8, quant.Int4} {
		for _, dt := range []memory.DType{memory.F32, memory.F16} {
			paged := dt == memory.F16
			t.Run(fmt.Sprintf("paged=%v/%v/%v", paged, f, dt), func(t *testing.T) {
				e := quantizedCacheEngine(t, paged)
				s := seed(t)
				replay(t, s)
				r := conformance.NewRand(s)
				ks, kt := calibratedKeyScales(t, e, rand.New(rand.NewPCG(s, 0x9a22)), hk, d)
				cfg := memory.KVCacheConfig{Sequences: 2, MaxLen: 64, Heads: hk, HeadDim: d, DType: dt, Headroom: 3, Paged: paged}
				if paged {
					cfg.PageTokens = 5
				}
				c, err := attention.NewQuantizedKVCache(e, cfg, f, attention.QuantizedKVCacheOptions{KeyScales: kt})
				require.NoError(t, err)
				t.Cleanup(c.Close)
				require.Equal(t, paged, c.Paged())
				require.Same(t, kt, c.KeyScales())
				var keys, vals []float32
				for c.Len(1) < n {
					m := min(n-c.Len(1), 1+r.IntN(4))
					k, v := conformance.Randn(r, dt, m*hk*d), conformance.Randn(r, dt, m*hk*d)
					require.NoError(t, appendQuantized(t, e, c, 1, k, v))
					keys, vals = append(keys, k...), append(vals, v...)
				}
				sk, err := ks.ScaleKeys(keys)
				require.NoError(t, err)
				hkq, err := quant.Quantize(f, sk, n, hk, d)
				require.NoError(t, err)
				hvq, err := quant.Quantize(f, vals, n, hk, d)
				require.NoError(t, err)
				kq, vq, err := c.View(ctx, 1)
				require.NoError(t, err)
				defer kq.Close()
				defer vq.Close()
				requireSameQuantized(t, hkq, kq)
				requireSameQuantized(t, hvq, vq)

				shape := []int{1, n, hk, d}
				uk, uv := uploadQuantized(t, e, hkq, shape), uploadQuantized(t, e, hvq, shape)
				q := upload(t, e, dt, conformance.Randn(r, dt, hq*d), 1, 1, hq, d)
				qs := upload(t, e, memory.F32, ks.Q, hk, d)
				decode := func(k, v *attention.Quantized, splits int) []uint32 {
					res, err := e.DecodeQuantized(ctx, q, k, v, attention.QuantizedDecodeOptions{
						DecodeOptions: attention.DecodeOptions{Splits: splits}, QueryScales: qs})
					require.NoError(t, err)
					defer res.Close()
					o := download(t, res.O)
					bits := make([]uint32, len(o))
					for i, x := range o {
						bits[i] = math.Float32bits(x)
					}
					return bits
				}
				for _, splits := range []int{1, 3} {
					require.Equal(t, decode(uk, uv, splits), decode(kq, vq, splits), "cache vs the dense scaled K/V, %d splits", splits)
				}

				// Bad key scales at construction; closed ones at append.
				wrong := upload(t, e, memory.F32, ks.K[:d], 1, d)
				half := upload(t, e, memory.F16, ks.K, hk, d)
				for want, opts := range map[string][]attention.QuantizedKVCacheOptions{
					"QuantizedKVCacheOptions.KeyScales must be a contiguous f32 tensor of shape [2 64] (Heads, HeadDim), got f32 [1 64]": {{KeyScales: wrong}},
					"QuantizedKVCacheOptions.KeyScales must be a contiguous f32 tensor of shape [2 64] (Heads, HeadDim), got f16 [2 64]": {{KeyScales: half}},
					"2 QuantizedKVCacheOptions, want at most one": {{}, {}},
				} {
					bad, err := attention.NewQuantizedKVCache(e, cfg, f, opts...)
					require.Nil(t, bad)
					require.ErrorContains(t, err, "attention: NewQuantizedKVCache: "+want)
				}
				gone := upload(t, e, memory.F32, ks.K, hk, d)
				c2, err := attention.NewQuantizedKVCache(e, cfg, f, attention.QuantizedKVCacheOptions{KeyScales: gone})
				require.NoError(t, err)
				t.Cleanup(c2.Close)
				gone.Close()
				err = appendQuantized(t, e, c2, 0, keys[:hk*d], vals[:hk*d])
				require.ErrorContains(t, err, "QuantizeOptions.Scales: "+memory.ErrClosed.Error())
				require.Equal(t, 0, c2.Len(0))
			})
		}
	}
}
