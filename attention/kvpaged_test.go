package attention_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/attention/reference"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/vk"
)

// TestKVCachePaged runs the KV cache tests on paged caches (KVCacheConfig.Paged), whose kernels
// find K and V rows through block tables: Decode and Forward on views grown token by token equal
// the dense calls bit for bit, DecodeCache equals Decode on packed copies bit for bit and the
// float64 oracle within tolerance, stale views are refused, and growth, release and reuse leak
// nothing.
func TestKVCachePaged(t *testing.T) {
	pagedCaches = true
	defer func() { pagedCaches = false }()
	for _, c := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"Decode", TestKVCacheDecode},
		{"Forward", TestKVCacheForward},
		{"DecodeCache", TestDecodeCache},
		{"DecodeCacheBadInputs", TestDecodeCacheBadInputs},
		{"StaleView", TestKVCacheStaleView},
		{"GrowWhileDecoding", TestKVCacheGrowWhileDecoding},
	} {
		t.Run(c.name, c.f)
	}
}

// TestKVCachePagedDecodeOracle decodes a paged sequence whose pages are scattered (small pages,
// two sequences grown in turn) at every decode tier the device runs (and the forward at the
// same tiers), against the float64 oracle; and runs the naive baseline on its views.
func TestKVCachePagedDecodeOracle(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	const hq, hk, d, n = 8, 2, 64, 77
	r := conformance.NewRand(seed(t))
	c, err := memory.NewKVCache(e.Allocator(), memory.KVCacheConfig{Sequences: 2, MaxLen: 128, Heads: hk, HeadDim: d, DType: memory.F16, Paged: true, PageTokens: 5})
	require.NoError(t, err)
	defer c.Close()
	var keys, vals []float32
	for c.Len(1) < n {
		m := min(n-c.Len(1), 1+r.IntN(7))
		k, v := conformance.Randn(r, memory.F16, m*hk*d), conformance.Randn(r, memory.F16, m*hk*d)
		require.NoError(t, c.Append(ctx, 1, k, v))
		keys, vals = append(keys, k...), append(vals, v...)
		require.NoError(t, c.Append(ctx, 0, conformance.Randn(r, memory.F16, hk*d), conformance.Randn(r, memory.F16, hk*d)))
	}
	k, v, err := c.View(1)
	require.NoError(t, err)
	const lq = 3
	qv := conformance.Randn(r, memory.F16, lq*hq*d)
	q, err := e.Upload(ctx, memory.F16, qv, 1, lq, hq, d)
	require.NoError(t, err)
	defer q.Close()
	p := reference.Params{Hq: hq, Hk: hk, D: d, CuSeqlensQ: []int{0, lq}, CuSeqlensK: []int{0, n}, Causal: true, WindowLeft: -1, WindowRight: -1}
	wantO, wantLSE, err := reference.Forward(p, conformance.Widen(qv), conformance.Widen(keys), conformance.Widen(vals))
	require.NoError(t, err)
	check := func(what string, res *attention.Result) {
		t.Helper()
		defer res.Close()
		_, err := conformance.CompareOutput(download(t, res.O), wantO, conformance.Tolerance(memory.F16))
		require.NoError(t, err, what)
		require.NoError(t, conformance.CompareLSE(download(t, res.LSE), wantLSE), what)
	}
	tiers := e.DecodeTiers() // fp16: every decode tier, the coopmat tier too where it runs
	require.NotEmpty(t, tiers)
	for _, tier := range tiers {
		require.Contains(t, e.DecodeTierInputs(tier), memory.F16, "tier %s", tier)
		for _, splits := range []int{1, 4} {
			res, err := e.Decode(ctx, q, k, v, attention.DecodeOptions{Options: attention.Options{Causal: true, LSE: true, Tier: tier}, Splits: splits})
			require.NoError(t, err, "tier %s", tier)
			check(res.Kernel, res)
		}
		res, err := e.Forward(ctx, q, k, v, attention.Options{Causal: true, LSE: true, Tier: tier})
		require.NoError(t, err, "tier %s", tier)
		check(res.Kernel, res)
	}
	naive := newResult(t, e, memory.F16, 1, lq, hq, d)
	_, err = e.NaiveForwardInto(ctx, naive.O, naive.LSE, q, k, v, attention.Options{Causal: true, LSE: true})
	require.NoError(t, err)
	check("naive", naive)
	_, err = e.Forward(ctx, k, k, v, attention.Options{})
	require.ErrorContains(t, err, "only float k and v")
	dense, err := e.Upload(ctx, memory.F16, vals, 1, n, hk, d)
	require.NoError(t, err)
	defer dense.Close()
	_, err = e.Forward(ctx, q, k, dense, attention.Options{})
	require.ErrorContains(t, err, "same paged KV cache")
}

// TestKVCachePagedOutOfMemory spends a paged cache's page budget: the append that finds no page
// fails with vk.ErrOutOfDeviceMemory and changes nothing, DecodeCache still reads every
// sequence, and once one is released the others grow again.
func TestKVCachePagedOutOfMemory(t *testing.T) {
	e := engine(t)
	ctx := context.Background()
	const hq, hk, d = 4, 1, 32
	r := rand.New(rand.NewPCG(seed(t), 7))
	c, err := memory.NewKVCache(e.Allocator(), memory.KVCacheConfig{Sequences: 3, MaxLen: 256, Heads: hk, HeadDim: d, DType: memory.F32,
		Paged: true, PageTokens: 8, MaxPages: 16, ChunkPages: 2})
	require.NoError(t, err)
	defer c.Close()
	for s := range 3 {
		require.NoError(t, c.Append(ctx, s, normals(r, 16*hk*d), normals(r, 16*hk*d)))
	}
	err = c.Append(ctx, 0, normals(r, 24*hk*d), normals(r, 24*hk*d))
	require.ErrorIs(t, err, vk.ErrOutOfDeviceMemory)
	require.Equal(t, 16, c.Len(0))
	q, err := e.Upload(ctx, memory.F32, normals(r, 3*hq*d), 3, 1, hq, d)
	require.NoError(t, err)
	defer q.Close()
	decode := func() {
		o := newResult(t, e, memory.F32, 3, 1, hq, d)
		_, err := e.DecodeCache(ctx, o.O, o.LSE, q, c, []int{0, 1, 2}, attention.DecodeOptions{Splits: 2})
		require.NoError(t, err)
	}
	decode()
	require.NoError(t, c.Release(1))
	require.NoError(t, c.Append(ctx, 0, normals(r, 16*hk*d), normals(r, 16*hk*d)))
	require.NoError(t, c.Append(ctx, 1, normals(r, 8*hk*d), normals(r, 8*hk*d)))
	decode()
	c.Trim() // frees the buffers the pages moved out of
	st := c.Stats()
	require.LessOrEqual(t, st.MemoryBytes, 16*st.PageSize, "the budget holds")
	decode()
}
