package attention_test

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/memory"
)

// TestKVCacheForward runs Forward on a KV cache's sequence views and on dense tensors holding
// the same keys and values: the outputs and logsumexps are bit-identical. The sequence is grown
// in uneven chunks between calls, then released and grown again on reused pages.
func TestKVCacheForward(t *testing.T) {
	e := cacheEngine(t)
	ctx := context.Background()
	const hq, hk, d = 4, 2, 64
	for _, dt := range []memory.DType{memory.F16, memory.F32} {
		t.Run(dt.String(), func(t *testing.T) {
			s := seed(t)
			r := rand.New(rand.NewPCG(s, 1))
			t.Logf("seed %d", s)
			c, err := newKVCache(e, memory.KVCacheConfig{Sequences: 3, MaxLen: 160, Heads: hk, HeadDim: d, DType: dt, Headroom: 3})
			require.NoError(t, err)
			defer c.Close()
			random := func(n int) []float32 {
				out := make([]float32, n)
				for i := range out {
					out[i] = float32(r.NormFloat64())
				}
				return out
			}
			require.NoError(t, c.Append(ctx, 0, random(9*hk*d), random(9*hk*d))) // a neighbour before
			var allK, allV []float32
			grow := func(to int) {
				for n := len(allK) / (hk * d); n < to; {
					m := min(to-n, 1+r.IntN(9))
					k, v := random(m*hk*d), random(m*hk*d)
					require.NoError(t, c.Append(ctx, 1, k, v))
					allK, allV = append(allK, k...), append(allV, v...)
					n += m
				}
			}
			check := func(lq int, opts attention.Options) {
				t.Helper()
				l := c.Len(1)
				ck, cv, err := c.View(1)
				require.NoError(t, err)
				dk, err := e.Upload(ctx, dt, allK, 1, l, hk, d)
				require.NoError(t, err)
				defer dk.Close()
				dv, err := e.Upload(ctx, dt, allV, 1, l, hk, d)
				require.NoError(t, err)
				defer dv.Close()
				q, err := e.Upload(ctx, dt, random(lq*hq*d), 1, lq, hq, d)
				require.NoError(t, err)
				defer q.Close()
				got, err := e.Forward(ctx, q, ck, cv, opts)
				require.NoError(t, err)
				defer got.Close()
				want, err := e.Forward(ctx, q, dk, dv, opts)
				require.NoError(t, err)
				defer want.Close()
				require.Equal(t, want.Kernel, got.Kernel)
				for _, p := range [][2]*memory.Tensor{{got.O, want.O}, {got.LSE, want.LSE}} {
					g, err := p[0].Download(ctx)
					require.NoError(t, err)
					w, err := p[1].Download(ctx)
					require.NoError(t, err)
					for i := range w {
						if math.Float32bits(g[i]) != math.Float32bits(w[i]) {
							t.Fatalf("Lk %d Lq %d %+v: element %d: cache %v, dense %v", l, lq, opts, i, g[i], w[i])
						}
					}
				}
			}
			for _, step := range []struct {
				len, lq int
				opts    attention.Options
			}{
				{1, 1, attention.Options{LSE: true}},
				{37, 5, attention.Options{Causal: true, LSE: true}},
				{131, 33, attention.Options{LSE: true}},
				{160, 160, attention.Options{Causal: true, LSE: true}},
			} {
				grow(step.len)
				check(step.lq, step.opts)
			}
			require.NoError(t, c.Append(ctx, 2, random(70*hk*d), random(70*hk*d))) // takes pages
			require.NoError(t, c.Release(1))
			allK, allV = nil, nil
			grow(100)
			check(3, attention.Options{Causal: true, LSE: true})
			st := c.Stats()
			t.Logf("%s: %d of %d bytes committed (K and V), pages %v of %d bytes", dt, st.CommittedBytes, st.NeededBytes,
				st.SeqPages, st.PageSize)
		})
	}
}
