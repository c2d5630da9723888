package attention_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/memory"
)

// pagedCaches makes newKVCache's caches paged (TestKVCachePaged).
var pagedCaches bool

// cacheEngine is the shared engine for KV cache tests; for caches on sparse buffers (not
// pagedCaches) it skips (fails where a device is required) without sparse residency buffers.
func cacheEngine(t *testing.T) *attention.Engine {
	e := engine(t)
	if err := e.Allocator().Device().SparseResidency(); err != nil && !pagedCaches {
		testenv.Lacks(t, err)
	}
	return e
}

// newKVCache makes a KV cache on e's allocator, paged under pagedCaches.
func newKVCache(e *attention.Engine, cfg memory.KVCacheConfig) (*memory.KVCache, error) {
	cfg.Paged = pagedCaches
	return memory.NewKVCache(e.Allocator(), cfg)
}

// mustKVCache is newKVCache that must succeed; the cache is closed when the test ends.
func mustKVCache(t *testing.T, e *attention.Engine, cfg memory.KVCacheConfig) *memory.KVCache {
	t.Helper()
	c, err := newKVCache(e, cfg)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// forCacheDTypes runs f as a subtest for each storage type the KV cache decode tests cover (f16,
// f32), with a fresh seed s, logged to replay a failure ($VKATTN_SEED).
func forCacheDTypes(t *testing.T, f func(t *testing.T, dt memory.DType, s uint64)) {
	for _, dt := range []memory.DType{memory.F16, memory.F32} {
		t.Run(dt.String(), func(t *testing.T) {
			s := seed(t)
			t.Logf("seed %d", s)
			f(t, dt, s)
		})
	}
}

// upload is e.Upload that must succeed; the tensor is closed when the test ends.
func upload(t *testing.T, e *attention.Engine, dt memory.DType, data []float32, shape ...int) *memory.Tensor {
	t.Helper()
	x, err := e.Upload(context.Background(), dt, data, shape...)
	require.NoError(t, err)
	t.Cleanup(x.Close)
	return x
}

// normals returns n standard normal values.
func normals(r *rand.Rand, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64())
	}
	return out
}

// requireSameResult fails unless got's output and logsumexp are bit-identical to want's; what
// names the case.
func requireSameResult(t *testing.T, what string, got, want *attention.Result) {
	t.Helper()
	requireSame(t, what+": o", got.O, want.O)
	requireSame(t, what+": lse", got.LSE, want.LSE)
}

// requireSame fails unless got and want are bit-identical.
func requireSame(t *testing.T, what string, got, want *memory.Tensor) {
	t.Helper()
	ctx := context.Background()
	g, err := got.Download(ctx)
	require.NoError(t, err)
	w, err := want.Download(ctx)
	require.NoError(t, err)
	require.Len(t, g, len(w))
	for i := range w {
		if math.Float32bits(g[i]) != math.Float32bits(w[i]) {
			t.Fatalf("%s: element %d: cache %v, dense %v", what, i, g[i], w[i])
		}
	}
}

// TestKVCacheDecode grows three sequences of a KV cache token by token, interleaved, and after
// every token runs Decode on the grown sequence's views and on dense tensors holding the same keys
// and values: outputs and logsumexps are bit-identical, for one new token and, now and then,
// several (causal) with a given number of splits.
func TestKVCacheDecode(t *testing.T) {
	e := cacheEngine(t)
	ctx := context.Background()
	const hq, hk, d = 8, 2, 64
	forCacheDTypes(t, func(t *testing.T, dt memory.DType, s uint64) {
		r := rand.New(rand.NewPCG(s, 2))
		c := mustKVCache(t, e, memory.KVCacheConfig{Sequences: 3, MaxLen: 80, Heads: hk, HeadDim: d, DType: dt, Headroom: 9})
		target := []int{80, 1 + r.IntN(60), 1 + r.IntN(60)}
		allK, allV := make([][]float32, 3), make([][]float32, 3)
		decodes := 0
		for step := 0; ; step++ {
			var open []int
			for s, n := range target {
				if c.Len(s) < n {
					open = append(open, s)
				}
			}
			if len(open) == 0 {
				break
			}
			s := open[r.IntN(len(open))]
			k, v := normals(r, hk*d), normals(r, hk*d)
			require.NoError(t, c.Append(ctx, s, k, v))
			allK[s], allV[s] = append(allK[s], k...), append(allV[s], v...)
			l := c.Len(s)
			// Splits pinned: the automatic split depends on the host's cores on a CPU device.
			opts := attention.DecodeOptions{Options: attention.Options{LSE: true}, Splits: 1 + step%3}
			lq := 1
			if step%7 == 3 {
				lq, opts.Causal, opts.Splits = min(l, 4), true, 3
			}
			ck, cv, err := c.View(s)
			require.NoError(t, err)
			dk, err := e.Upload(ctx, dt, allK[s], 1, l, hk, d)
			require.NoError(t, err)
			dv, err := e.Upload(ctx, dt, allV[s], 1, l, hk, d)
			require.NoError(t, err)
			q, err := e.Upload(ctx, dt, normals(r, lq*hq*d), 1, lq, hq, d)
			require.NoError(t, err)
			got, err := e.Decode(ctx, q, ck, cv, opts)
			require.NoError(t, err)
			want, err := e.Decode(ctx, q, dk, dv, opts)
			require.NoError(t, err)
			require.Equal(t, want.Kernel, got.Kernel)
			what := fmt.Sprintf("sequence %d, %d keys, %d new tokens, %+v", s, l, lq, opts)
			requireSameResult(t, what, got, want)
			for _, x := range []interface{ Close() }{got, want, q, dk, dv} {
				x.Close()
			}
			decodes++
		}
		st := c.Stats()
		t.Logf("%s: %d decodes; %d of %d bytes committed (K and V), %d bind batches", dt, decodes, st.CommittedBytes, st.NeededBytes, st.BindBatches)
	})
}

// checkBound checks the commit bound on every sequence: its pages cover its tokens and exceed
// them by less than one page plus the headroom, per tensor.
func checkBound(t *testing.T, c *memory.KVCache) {
	t.Helper()
	cfg := c.Config()
	st := c.Stats()
	tb := uint64(cfg.Heads * cfg.HeadDim * cfg.DType.Size())
	var need uint64
	for s, n := range st.SeqTokens {
		have := uint64(st.SeqPages[s]/2) * st.PageSize // per tensor
		require.GreaterOrEqual(t, have, uint64(n)*tb, "sequence %d", s)
		require.Less(t, have, uint64(n)*tb+st.PageSize+uint64(cfg.Headroom)*tb, "sequence %d: %d pages for %d tokens", s, st.SeqPages[s], n)
		need += uint64(n) * tb
	}
	require.Equal(t, 2*need, st.NeededBytes, "K and V")
	require.LessOrEqual(t, st.CommittedBytes, 2*(need+uint64(len(st.SeqTokens))*(st.PageSize+uint64(cfg.Headroom)*tb)))
}

// TestKVCacheGrowWhileDecoding grows 64 sequences a few tokens per round while decoding them
// (a quarter of them each round, one Decode per sequence: cache views are per sequence),
// releases half of them midway and grows them again: the commit bound holds every round, memory
// grows only when the free pages run out (released pages are reused), and at the end, everything
// released and trimmed, the cache holds no memory and the engine's device reports no object left
// alive when it closes.
func TestKVCacheGrowWhileDecoding(t *testing.T) {
	e := cacheEngine(t)
	ctx := context.Background()
	const seqs, hq, hk, d, rounds, chunk = 64, 4, 1, 32, 12, 8
	r := rand.New(rand.NewPCG(seed(t), 3))
	c := mustKVCache(t, e, memory.KVCacheConfig{Sequences: seqs, MaxLen: 200, Heads: hk, HeadDim: d,
		DType: memory.F16, Headroom: 16, ChunkPages: chunk})
	q := upload(t, e, memory.F16, normals(r, hq*d), 1, 1, hq, d)
	for round := range rounds {
		if round == rounds/2 {
			for s := 0; s < seqs; s += 2 {
				require.NoError(t, c.Release(s))
			}
		}
		before := c.Stats()
		for s := range seqs {
			n := 1 + r.IntN(12)
			require.NoError(t, c.Append(ctx, s, normals(r, n*hk*d), normals(r, n*hk*d)))
			if s%4 == round%4 {
				k, v, err := c.View(s)
				require.NoError(t, err)
				res, err := e.Decode(ctx, q, k, v, attention.DecodeOptions{})
				require.NoError(t, err)
				res.Close()
			}
		}
		checkBound(t, c)
		st := c.Stats()
		if st.MemoryBytes > before.MemoryBytes && !c.Paged() { // paged, the pool grows by half
			// A chunk was allocated only when the free list ran short: what is left of it is
			// less than a chunk and one growth's pages (two per tensor here).
			require.Less(t, st.FreePages, chunk+4, "round %d: memory grew from %d to %d bytes with free pages left", round,
				before.MemoryBytes, st.MemoryBytes)
		}
	}
	st := c.Stats()
	t.Logf("64 sequences, %d tokens: %d of %d bytes committed (K and V), %d bytes of memory, %d bind batches",
		sum(st.SeqTokens), st.CommittedBytes, st.NeededBytes, st.MemoryBytes, st.BindBatches)
	for s := range seqs {
		require.NoError(t, c.Release(s))
	}
	c.Trim()
	st = c.Stats()
	require.Zero(t, st.CommittedBytes)
	require.Zero(t, st.MemoryBytes)
	require.Zero(t, st.Allocations)
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// TestKVCacheStaleView decodes and runs Forward on views of a released sequence: an error naming
// the tensor and wrapping memory.ErrClosed, nothing run, even once the sequence holds tokens
// again.
func TestKVCacheStaleView(t *testing.T) {
	e := cacheEngine(t)
	ctx := context.Background()
	const hq, hk, d = 4, 2, 64
	c := mustKVCache(t, e, memory.KVCacheConfig{Sequences: 2, MaxLen: 32, Heads: hk, HeadDim: d, DType: memory.F16})
	r := rand.New(rand.NewPCG(5, 6))
	require.NoError(t, c.Append(ctx, 0, normals(r, 8*hk*d), normals(r, 8*hk*d)))
	k, v, err := c.View(0)
	require.NoError(t, err)
	q := upload(t, e, memory.F16, normals(r, hq*d), 1, 1, hq, d)
	res, err := e.Decode(ctx, q, k, v, attention.DecodeOptions{Splits: 1})
	require.NoError(t, err)
	res.Close()
	require.NoError(t, c.Release(0))
	require.NoError(t, c.Append(ctx, 0, normals(r, 8*hk*d), normals(r, 8*hk*d)))
	_, err = e.Decode(ctx, q, k, v, attention.DecodeOptions{Splits: 1})
	require.ErrorIs(t, err, memory.ErrClosed)
	require.ErrorContains(t, err, "attention: k:")
	_, err = e.Forward(ctx, q, k, v, attention.Options{})
	require.ErrorIs(t, err, memory.ErrClosed)
	k2, v2, err := c.View(0)
	require.NoError(t, err)
	_, err = e.Forward(ctx, q, k2, v, attention.Options{})
	require.ErrorContains(t, err, "attention: v:")
	res, err = e.Decode(ctx, q, k2, v2, attention.DecodeOptions{Splits: 1})
	require.NoError(t, err)
	res.Close()
}
