package attention_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/attention/reference"
	"github.com/vkattn/vkattn/memory"
)

// cacheCase is a KV cache whose sequences hold random keys and values, and their host copies.
type cacheCase struct {
	c          *memory.KVCache
	keys, vals [][]float32 // per sequence, [len, Hk, D], rounded to the dtype
}

// newCacheCase fills sequence s of a new cache with lens[s] tokens, in several appends.
func newCacheCase(t *testing.T, e *attention.Engine, cfg memory.KVCacheConfig, lens []int, seed uint64) *cacheCase {
	t.Helper()
	ctx := context.Background()
	c := mustKVCache(t, e, cfg)
	r := conformance.NewRand(seed)
	cc := &cacheCase{c: c, keys: make([][]float32, cfg.Sequences), vals: make([][]float32, cfg.Sequences)}
	per := cfg.Heads * cfg.HeadDim
	for s, n := range lens {
		for done := 0; done < n; {
			m := min(n-done, 1+r.IntN(40))
			k, v := conformance.Randn(r, cfg.DType, m*per), conformance.Randn(r, cfg.DType, m*per)
			require.NoError(t, c.Append(ctx, s, k, v))
			cc.keys[s], cc.vals[s] = append(cc.keys[s], k...), append(cc.vals[s], v...)
			done += m
		}
	}
	return cc
}

// packed returns the keys and values of seqs as packed [tokens, Hk, D] device tensors and their
// cumulative lengths.
func (cc *cacheCase) packed(t *testing.T, e *attention.Engine, seqs []int) (k, v *memory.Tensor, cu []int) {
	t.Helper()
	cfg := cc.c.Config()
	var ks, vs []float32
	cu = []int{0}
	for _, s := range seqs {
		ks, vs = append(ks, cc.keys[s]...), append(vs, cc.vals[s]...)
		cu = append(cu, cu[len(cu)-1]+len(cc.keys[s])/(cfg.Heads*cfg.HeadDim))
	}
	k = upload(t, e, cfg.DType, ks, cu[len(cu)-1], cfg.Heads, cfg.HeadDim)
	v = upload(t, e, cfg.DType, vs, cu[len(cu)-1], cfg.Heads, cfg.HeadDim)
	return k, v, cu
}

// TestDecodeCache decodes sequences of a KV cache whose regions lie in two buffers, in one call,
// out of order, with varlen lengths and new tokens (a sequence with none among them): the
// outputs and logsumexps equal, bit for bit, Decode's on packed copies of the same keys (the
// same splits) and match the float64 oracle; with one split and one new token each, they equal
// Decode's on each sequence's views.
func TestDecodeCache(t *testing.T) {
	e := cacheEngine(t)
	ctx := context.Background()
	const hq, hk, d = 8, 2, 64
	forCacheDTypes(t, func(t *testing.T, dt memory.DType, s uint64) {
		r := conformance.NewRand(s)
		// Regions of 2^16 tokens of 256 or 512 bytes: a 128 MiB buffer holds 8 or 4 of them,
		// so 10 sequences take two buffers (lavapipe's maxStorageBufferRange), more elsewhere.
		cfg := memory.KVCacheConfig{Sequences: 10, MaxLen: 1 << 16, Heads: hk, HeadDim: d, DType: dt, Headroom: 8}
		lens := make([]int, cfg.Sequences)
		for i := range lens {
			lens[i] = 1 + r.IntN(300)
		}
		cc := newCacheCase(t, e, cfg, lens, s)
		seqs := []int{9, 0, 5, 3, 8, 1}
		groups, err := cc.c.Batch(seqs)
		require.NoError(t, err)
		if e.Profile().MaxStorageBufferRange <= 128<<20 && !cc.c.Paged() {
			require.Greater(t, len(groups), 1, "the sequences lie in one buffer")
		}
		lq := make([]int, len(seqs))
		for i := range lq {
			lq[i] = r.IntN(4) // 0 to 3 new tokens
		}
		lq[0] = max(lq[0], 1)
		cuQ := reference.Cumulative(lq)
		qv := conformance.Randn(r, dt, cuQ[len(seqs)]*hq*d)
		q := upload(t, e, dt, qv, cuQ[len(seqs)], hq, d)
		k, v, cuK := cc.packed(t, e, seqs)
		for _, causal := range []bool{false, true} {
			for _, splits := range []int{0, 1, 3} {
				what := fmt.Sprintf("causal %v, splits %d", causal, splits)
				opts := attention.DecodeOptions{Options: attention.Options{LSE: true, Causal: causal, CuSeqlensQ: cuQ}, Splits: splits}
				got := newResult(t, e, dt, cuQ[len(seqs)], hq, d)
				kernel, err := e.DecodeCache(ctx, got.O, got.LSE, q, cc.c, seqs, opts)
				require.NoError(t, err, what)
				dense := opts
				dense.CuSeqlensK = cuK
				want, err := e.Decode(ctx, q, k, v, dense)
				require.NoError(t, err, what)
				require.Equal(t, want.Kernel, kernel, what)
				requireSameResult(t, what, got, want)
				want.Close()
				p := reference.Params{Hq: hq, Hk: hk, D: d, CuSeqlensQ: cuQ, CuSeqlensK: cuK, Causal: causal, WindowLeft: -1, WindowRight: -1}
				ks, err := k.Download(ctx)
				require.NoError(t, err)
				vs, err := v.Download(ctx)
				require.NoError(t, err)
				wantO, wantLSE, err := reference.Forward(p, conformance.Widen(qv), conformance.Widen(ks), conformance.Widen(vs))
				require.NoError(t, err)
				_, err = conformance.CompareOutput(download(t, got.O), wantO, conformance.Tolerance(dt))
				require.NoError(t, err, what)
				require.NoError(t, conformance.CompareLSE(download(t, got.LSE), wantLSE), what)
			}
		}
		// One new token each, one split: Decode on each sequence's views.
		q1 := upload(t, e, dt, conformance.Randn(r, dt, len(seqs)*hq*d), len(seqs), 1, hq, d)
		got := newResult(t, e, dt, len(seqs), 1, hq, d)
		opts := attention.DecodeOptions{Options: attention.Options{LSE: true}, Splits: 1}
		_, err = e.DecodeCache(ctx, got.O, got.LSE, q1, cc.c, seqs, opts)
		require.NoError(t, err)
		for i, s := range seqs {
			kv, vv, err := cc.c.View(s)
			require.NoError(t, err)
			qi, err := q1.View([]int{1, 1, hq, d}, q1.Strides, i*hq*d)
			require.NoError(t, err)
			want, err := e.Decode(ctx, qi, kv, vv, opts)
			require.NoError(t, err)
			oi, err := got.O.View([]int{1, 1, hq, d}, got.O.Strides, i*hq*d)
			require.NoError(t, err)
			li, err := got.LSE.View([]int{1, 1, hq}, got.LSE.Strides, i*hq)
			require.NoError(t, err)
			requireSameResult(t, fmt.Sprintf("sequence %d", s), &attention.Result{O: oi, LSE: li}, want)
			want.Close()
		}
	})
}

// newResult allocates an output of shape and dtype dt and an fp32 logsumexp of shape without the
// head dim, freed when the test ends.
func newResult(t *testing.T, e *attention.Engine, dt memory.DType, shape ...int) *attention.Result {
	t.Helper()
	o, err := e.NewTensor(dt, shape...)
	require.NoError(t, err)
	lse, err := e.NewTensor(memory.F32, shape[:len(shape)-1]...)
	require.NoError(t, err)
	res := &attention.Result{O: o, LSE: lse}
	t.Cleanup(res.Close)
	require.NoError(t, o.Fill(context.Background(), conformance.Poison))
	require.NoError(t, lse.Fill(context.Background(), conformance.Poison))
	return res
}

// TestDecodeCacheBadInputs: malformed DecodeCache calls return errors naming what is wrong and
// leak nothing.
func TestDecodeCacheBadInputs(t *testing.T) {
	e := cacheEngine(t)
	ctx := context.Background()
	const hq, hk, d = 4, 2, 64
	cfg := memory.KVCacheConfig{Sequences: 3, MaxLen: 64, Heads: hk, HeadDim: d, DType: memory.F16}
	cc := newCacheCase(t, e, cfg, []int{5, 7, 0}, 1)
	q := newTensor(t, e, memory.F16, 2, 1, hq, d)
	o := newTensor(t, e, memory.F16, 2, 1, hq, d)
	q32 := newTensor(t, e, memory.F32, 2, 1, hq, d)
	o32 := newTensor(t, e, memory.F32, 2, 1, hq, d)
	for _, c := range []struct {
		name  string
		q, o  *memory.Tensor
		cache *memory.KVCache
		seqs  []int
		opts  attention.DecodeOptions
		want  string
	}{
		{"nil cache", q, o, nil, []int{0, 1}, attention.DecodeOptions{}, "attention: cache is nil"},
		{"empty", q, o, cc.c, []int{0, 2}, attention.DecodeOptions{}, "attention: cache: memory: kv cache: sequence 2 is empty"},
		{"twice", q, o, cc.c, []int{1, 1}, attention.DecodeOptions{}, "sequence 1 is twice in the batch"},
		{"range", q, o, cc.c, []int{0, 3}, attention.DecodeOptions{}, "sequence 3 out of range"},
		{"batch", q, o, cc.c, []int{0}, attention.DecodeOptions{}, "attention: q has batch 2 for 1 cache sequences"},
		{"cuK", q, o, cc.c, []int{0, 1}, attention.DecodeOptions{Options: attention.Options{CuSeqlensK: []int{0, 5, 12}}}, "Options.CuSeqlensK must be nil"},
		{"cuQ", q, o, cc.c, []int{0, 1}, attention.DecodeOptions{Options: attention.Options{CuSeqlensQ: []int{0, 1}}}, "CuSeqlensQ has 2 entries for 2 sequences, want 3"},
		{"dtype", q32, o32, cc.c, []int{0, 1}, attention.DecodeOptions{}, "attention: k is f16 but q is f32"},
		{"splits", q, o, cc.c, []int{0, 1}, attention.DecodeOptions{Splits: -1}, "DecodeOptions.Splits must be >= 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			engine(t)
			before := liveStats(e)
			_, err := e.DecodeCache(ctx, c.o, nil, c.q, c.cache, c.seqs, c.opts)
			require.ErrorContains(t, err, c.want)
			require.Equal(t, before, liveStats(e), "leaked")
		})
	}
}
