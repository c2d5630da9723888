package attention_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/quant"
	"github.com/vkattn/vkattn/vk"
)

// quantizedCacheEngine is the shared engine, skipping (failing where a device is required)
// sparse-layout tests on a device without sparse residency buffers. Paged, the test runs
// without the tensor-core kernels (DecodeIMMAEnv 0): they do not take paged views, and the tests
// compare their decodes bit for bit with those of dense copies, which they would take.
func quantizedCacheEngine(t *testing.T, paged bool) *attention.Engine {
	e := engine(t)
	if err := e.Allocator().Device().SparseResidency(); err != nil && !paged {
		testenv.Lacks(t, err)
	}
	if paged {
		t.Setenv(attention.DecodeIMMAEnv, "0")
	}
	return e
}

// newQuantizedKVCache is attention.NewQuantizedKVCache that must succeed, in the layout asked
// for; the cache is closed when the test ends.
func newQuantizedKVCache(t *testing.T, e *attention.Engine, cfg memory.KVCacheConfig, f quant.Format) *attention.QuantizedKVCache {
	t.Helper()
	c, err := attention.NewQuantizedKVCache(e, cfg, f)
	require.NoError(t, err)
	require.Equal(t, cfg.Paged, c.Paged())
	t.Cleanup(c.Close)
	return c
}

// appendQuantized appends float keys and values of m tokens, [m, hk, d] or [1, m, hk, d]
// (alternately, by m), to sequence seq of c.
func appendQuantized(t *testing.T, e *attention.Engine, c *attention.QuantizedKVCache, seq int, k, v []float32) error {
	t.Helper()
	cfg := c.Config()
	m := len(k) / (cfg.Heads * cfg.HeadDim)
	shape := []int{m, cfg.Heads, cfg.HeadDim}
	if m%2 == 0 {
		shape = append([]int{1}, shape...)
	}
	kt, err := e.Upload(context.Background(), cfg.DType, k, shape...)
	require.NoError(t, err)
	defer kt.Close()
	vt, err := e.Upload(context.Background(), cfg.DType, v, shape...)
	require.NoError(t, err)
	defer vt.Close()
	return c.AppendTensors(context.Background(), seq, kt, vt)
}

// decodeBits runs DecodeQuantized of q over k and v at tier and returns o's bits.
func decodeBits(t *testing.T, e *attention.Engine, q *memory.Tensor, k, v *attention.Quantized, tier devices.Tier, splits int) []uint32 {
	t.Helper()
	res, err := e.DecodeQuantized(context.Background(), q, k, v, attention.QuantizedDecodeOptions{DecodeOptions: attention.DecodeOptions{
		Options: attention.Options{Tier: tier}, Splits: splits}})
	require.NoError(t, err)
	defer res.Close()
	o := download(t, res.O)
	bits := make([]uint32, len(o))
	for i, x := range o {
		bits[i] = math.Float32bits(x)
	}
	return bits
}

// checkQuantizedSequence checks sequence seq of c against the float keys and values appended to
// it: its views hold quant.Quantize's codes and scales of them, bit for bit, and DecodeQuantized
// over the views equals, bit for bit, DecodeQuantized over Quantize of the dense K and V and over
// UploadQuantized of quant.Quantize of them, at the scalar and subgroup tiers. In the paged
// layout the views are paged, codes and scales alike (the kernels read them through their block
// tables); the test gathers them into contiguous tensors to decode them as dense K and V too.
func checkQuantizedSequence(t *testing.T, e *attention.Engine, c *attention.QuantizedKVCache, seq int, keys, vals []float32, q *memory.Tensor) {
	t.Helper()
	ctx := context.Background()
	cfg, f := c.Config(), c.Format()
	n := len(keys) / (cfg.Heads * cfg.HeadDim)
	require.Equal(t, n, c.Len(seq))
	kq, vq, err := c.View(ctx, seq)
	require.NoError(t, err)
	defer kq.Close()
	defer vq.Close()
	require.Equal(t, []int{1, n, cfg.Heads, cfg.HeadDim}, kq.Shape())
	shape := []int{1, n, cfg.Heads, cfg.HeadDim}
	dense := [2]*attention.Quantized{kq, vq} // the views, gathered where paged
	for i, x := range dense {
		_, cp := x.Codes.Pages()
		_, sp := x.Scales.Pages()
		require.Equal(t, c.Paged(), cp != nil, "paged codes")
		require.Equal(t, c.Paged(), sp != nil, "paged scales")
		if c.Paged() {
			g, err := attention.GatherQuantized(ctx, x)
			require.NoError(t, err)
			defer g.Close()
			dense[i] = g
		}
	}
	var host [2]*quant.Tensor
	for i, x := range [][]float32{keys, vals} {
		h, err := quant.Quantize(f, x, n, cfg.Heads, cfg.HeadDim)
		require.NoError(t, err)
		host[i] = h
	}
	requireSameQuantized(t, host[0], kq)
	requireSameQuantized(t, host[1], vq)
	dk, err := e.Quantize(ctx, f, upload(t, e, cfg.DType, keys, shape...))
	require.NoError(t, err)
	defer dk.Close()
	dv, err := e.Quantize(ctx, f, upload(t, e, cfg.DType, vals, shape...))
	require.NoError(t, err)
	defer dv.Close()
	uk, uv := uploadQuantized(t, e, host[0], shape), uploadQuantized(t, e, host[1], shape)
	for _, tier := range decodeCacheTiers(e, q.DType) {
		for _, splits := range []int{1, 3} {
			got := decodeBits(t, e, q, kq, vq, tier, splits)
			if c.Paged() {
				require.Equal(t, decodeBits(t, e, q, dense[0], dense[1], tier, splits), got, "%v: paged views vs gathered copies, %d splits", tier, splits)
			}
			require.Equal(t, decodeBits(t, e, q, dk, dv, tier, splits), got, "%v: cache vs Quantize of the dense K/V, %d splits", tier, splits)
			require.Equal(t, decodeBits(t, e, q, uk, uv, tier, splits), got, "%v: cache vs UploadQuantized, %d splits", tier, splits)
		}
	}
}

// TestQuantizedKVCache grows Int8 and Int4 quantized caches of f32 and f16 keys and values token
// by token (appends of varying sizes, two sequences in turn), in the sparse and the paged layout
// (pages of 5 tokens, scattered, the last one partial, and the scales' pages other than the
// codes'): the views hold quant.Quantize's codes and scales and decode bit for bit as the dense
// K and V quantized whole do (checkQuantizedSequence); Stats adds up; a released sequence's views
// close and the sequence is reused. The shared engine finds no leaks.
func TestQuantizedKVCache(t *testing.T) {
	ctx := context.Background()
	const hq, d, n = 4, 64, 41
	for _, paged := range []bool{false, true} {
		for _, f := range []quant.Format{quant.Int8, quant.Int4} {
			for _, dt := range []memory.DType{memory.F32, memory.F16} {
				// One kv head: an odd number of scales a token, which the sparse layout appends
				// through scratch instead of in place.
				hk := map[memory.DType]int{memory.F32: 2, memory.F16: 1}[dt]
				t.Run(fmt.Sprintf("paged=%v/%v/%v/hk=%d", paged, f, dt, hk), func(t *testing.T) {
					e := quantizedCacheEngine(t, paged)
					s := seed(t)
					replay(t, s)
					r := conformance.NewRand(s)
					cfg := memory.KVCacheConfig{Sequences: 2, MaxLen: 96, Heads: hk, HeadDim: d, DType: dt, Headroom: 3, Paged: paged}
					if paged {
						cfg.PageTokens = 5
					}
					c := newQuantizedKVCache(t, e, cfg, f)
					if paged { // the scales' pages go to the sequences in another order than the codes'
						_, scales := attention.QuantizedKVCacheParts(c)
						require.NoError(t, scales.Reserve(0, 4))
					}
					var keys, vals [2][]float32
					for c.Len(1) < n {
						m := min(n-c.Len(1), 1+r.IntN(7))
						for _, p := range []struct{ seq, m int }{{1, m}, {0, 1}} {
							k, v := conformance.Randn(r, dt, p.m*hk*d), conformance.Randn(r, dt, p.m*hk*d)
							require.NoError(t, appendQuantized(t, e, c, p.seq, k, v))
							keys[p.seq], vals[p.seq] = append(keys[p.seq], k...), append(vals[p.seq], v...)
						}
					}
					q := upload(t, e, dt, conformance.Randn(r, dt, hq*d), 1, 1, hq, d)
					for seq := range 2 {
						checkQuantizedSequence(t, e, c, seq, keys[seq], vals[seq], q)
					}
					if paged {
						kq, _, err := c.View(ctx, 1)
						require.NoError(t, err)
						pt, codes := kq.Codes.Pages()
						_, scales := kq.Scales.Pages()
						require.Equal(t, cfg.PageTokens, pt)
						require.Len(t, codes, (n+pt-1)/pt, "several pages, the last one partial")
						require.NotEqual(t, codes, scales, "the codes' and the scales' block tables differ")
					}

					st := c.Stats()
					tokens := c.Len(0) + c.Len(1)
					wantNeeded := 2 * uint64(tokens*hk) * (d/uint64(f.PerWord())*4 + uint64(f.Groups(d))*2)
					require.Equal(t, wantNeeded, st.NeededBytes)
					require.Equal(t, st.Codes.NeededBytes+st.Scales.NeededBytes, st.NeededBytes)
					require.Equal(t, st.Codes.CommittedBytes+st.Scales.CommittedBytes, st.CommittedBytes)
					require.GreaterOrEqual(t, st.CommittedBytes, st.NeededBytes)
					require.Equal(t, 2*uint64(tokens*hk)*d*uint64(dt.Size()), st.FloatBytes)
					require.Less(t, st.NeededBytes, st.FloatBytes)

					// Release and reuse.
					kq, _, err := c.View(ctx, 1)
					require.NoError(t, err)
					defer kq.Close()
					require.NoError(t, c.Release(1))
					require.Equal(t, 0, c.Len(1))
					require.True(t, kq.Codes.Closed(), "views of a released sequence close")
					require.True(t, kq.Scales.Closed())
					_, _, err = c.View(ctx, 1)
					require.ErrorContains(t, err, "sequence 1 is empty")
					st = c.Stats()
					require.Zero(t, st.Codes.SeqPages[1]+st.Scales.SeqPages[1])
					keys[1], vals[1] = nil, nil
					for _, m := range []int{9, 2} {
						k, v := conformance.Randn(r, dt, m*hk*d), conformance.Randn(r, dt, m*hk*d)
						require.NoError(t, appendQuantized(t, e, c, 1, k, v))
						keys[1], vals[1] = append(keys[1], k...), append(vals[1], v...)
					}
					checkQuantizedSequence(t, e, c, 1, keys[1], vals[1], q)
					checkQuantizedSequence(t, e, c, 0, keys[0], vals[0], q)
					// Trim frees memory no sequence needs (never more is held after); the
					// sequences read the same.
					held := func() uint64 { st := c.Stats(); return st.Codes.MemoryBytes + st.Scales.MemoryBytes }
					before := held()
					c.Trim()
					require.LessOrEqual(t, held(), before)
					checkQuantizedSequence(t, e, c, 1, keys[1], vals[1], q)
					checkQuantizedSequence(t, e, c, 0, keys[0], vals[0], q)
				})
			}
		}
	}
}

// TestQuantizedKVCacheHalfAppend makes the second half of an append (the scales) fail, its pages
// spent by another sequence (MaxPages): the append returns vk.ErrOutOfDeviceMemory and leaves
// the sequence as it was in both caches, empty or not; once the pages are back it succeeds.
func TestQuantizedKVCacheHalfAppend(t *testing.T) {
	const hq, hk, d = 4, 2, 64
	for _, paged := range []bool{false, true} {
		t.Run(fmt.Sprintf("paged=%v", paged), func(t *testing.T) {
			e := quantizedCacheEngine(t, paged)
			r := rand.New(rand.NewPCG(seed(t), 11))
			// MaxPages 4: two pages for K and two for V in each cache (both layouts).
			cfg := memory.KVCacheConfig{Sequences: 3, MaxLen: 64, Heads: hk, HeadDim: d, DType: memory.F32, MaxPages: 4, Paged: paged}
			if paged {
				cfg.PageTokens = 4
			}
			c := newQuantizedKVCache(t, e, cfg, quant.Int8)
			codes, scales := attention.QuantizedKVCacheParts(c)
			var keys, vals []float32
			grow := func(m int) error {
				k, v := conformance.Randn(r, memory.F32, m*hk*d), conformance.Randn(r, memory.F32, m*hk*d)
				err := appendQuantized(t, e, c, 0, k, v)
				if err == nil {
					keys, vals = append(keys, k...), append(vals, v...)
				}
				return err
			}
			fail := func(m int) {
				t.Helper()
				had := c.Len(0)
				err := grow(m)
				require.ErrorIs(t, err, vk.ErrOutOfDeviceMemory)
				require.ErrorContains(t, err, "scales")
				require.Equal(t, had, c.Len(0))
				require.Equal(t, had, codes.Len(0), "the codes' append is undone")
				require.Equal(t, had, scales.Len(0))
				st := c.Stats()
				require.Equal(t, st.Codes.SeqPages[0], st.Scales.SeqPages[0], "the codes' pages are given back")
			}
			// Sequences 1 and 2 take every page of the scales' cache; the codes' have theirs.
			require.NoError(t, scales.Reserve(1, 1))
			require.NoError(t, scales.Reserve(2, 1))
			fail(2)    // an empty sequence
			if paged { // the sparse pages hold far more than a few tokens
				require.NoError(t, scales.Release(2))
				require.NoError(t, grow(1))
				fail(4) // past its page of 4 tokens: the codes get a page, the scales none
			}
			require.NoError(t, scales.Release(1))
			require.NoError(t, scales.Release(2))
			require.NoError(t, grow(5))
			q := upload(t, e, memory.F32, normals(rand.New(rand.NewPCG(1, 2)), hq*d), 1, 1, hq, d)
			checkQuantizedSequence(t, e, c, 0, keys, vals, q)
		})
	}
}

// TestQuantizedKVCacheBadInputs: NewQuantizedKVCache, AppendTensors, View and Release refuse
// malformed calls with errors naming what is at fault, and change nothing; DecodeQuantized
// refuses the paged layout's views mixed with unpaged tensors or with another sequence's, as
// anything but K and V, and once their sequence is released.
func TestQuantizedKVCacheBadInputs(t *testing.T) {
	e := quantizedCacheEngine(t, true)
	ctx := context.Background()
	good := memory.KVCacheConfig{Sequences: 2, MaxLen: 16, Heads: 2, HeadDim: 64, DType: memory.F16, Paged: true}
	for want, mod := range map[string]func(*memory.KVCacheConfig, *quant.Format){
		"format e4m3":                           func(_ *memory.KVCacheConfig, f *quant.Format) { *f = quant.E4M3 },
		"KVCacheConfig.DType must be":           func(c *memory.KVCacheConfig, _ *quant.Format) { c.DType = 9 },
		"HeadDim: quant: int4 needs a head dim": func(c *memory.KVCacheConfig, f *quant.Format) { c.HeadDim, *f = 36, quant.Int4 },
		"HeadDim: quant":                        func(c *memory.KVCacheConfig, _ *quant.Format) { c.HeadDim = 0 },
		"Unpaired":                              func(c *memory.KVCacheConfig, _ *quant.Format) { c.Unpaired = true },
		"codes: memory: KVCacheConfig.MaxLen":   func(c *memory.KVCacheConfig, _ *quant.Format) { c.MaxLen = 0 },
	} {
		cfg, f := good, quant.Int8
		mod(&cfg, &f)
		c, err := attention.NewQuantizedKVCache(e, cfg, f)
		require.ErrorContains(t, err, want)
		require.Nil(t, c)
	}
	_, err := attention.NewQuantizedKVCache(nil, good, quant.Int8)
	require.ErrorIs(t, err, attention.ErrClosed)

	c := newQuantizedKVCache(t, e, good, quant.Int8)
	k := newTensor(t, e, memory.F16, 3, 2, 64)
	k4 := newTensor(t, e, memory.F16, 1, 4, 2, 64)
	k32 := newTensor(t, e, memory.F32, 3, 2, 64)
	heads := newTensor(t, e, memory.F16, 3, 4, 64)
	batch := newTensor(t, e, memory.F16, 2, 3, 2, 64)
	for want, err := range map[string]error{
		"sequence -1 out of range":       c.AppendTensors(ctx, -1, k, k),
		"sequence 2 out of range":        c.AppendTensors(ctx, 2, k, k),
		"k is nil":                       c.AppendTensors(ctx, 0, nil, k),
		"v is nil":                       c.AppendTensors(ctx, 0, k, nil),
		"k is f32 [3 2 64], want f16":    c.AppendTensors(ctx, 0, k32, k),
		"v is f16 [3 4 64]":              c.AppendTensors(ctx, 0, k, heads),
		"k is f16 [2 3 2 64]":            c.AppendTensors(ctx, 0, batch, batch),
		"k has 3 tokens, v 4":            c.AppendTensors(ctx, 0, k, k4),
		"sequence 5 out of range [0, 2)": c.Release(5),
	} {
		require.ErrorContains(t, err, want)
	}
	_, _, err = c.View(ctx, 0)
	require.ErrorContains(t, err, "sequence 0 is empty")
	_, _, err = c.View(ctx, 3)
	require.ErrorContains(t, err, "sequence 3 out of range")
	require.Equal(t, 0, c.Len(-1))
	st := c.Stats()
	require.Equal(t, []int{0, 0}, st.Codes.SeqTokens, "failed calls change nothing")
	require.Equal(t, []int{0, 0}, st.Scales.SeqTokens)
	require.Zero(t, st.CommittedBytes)

	r := conformance.NewRand(seed(t))
	for seq := range 2 {
		require.NoError(t, appendQuantized(t, e, c, seq, conformance.Randn(r, memory.F16, 3*2*64), conformance.Randn(r, memory.F16, 3*2*64)))
	}
	k0, v0, err := c.View(ctx, 0)
	require.NoError(t, err)
	k1, v1, err := c.View(ctx, 1)
	require.NoError(t, err)
	g0, err := attention.GatherQuantized(ctx, k0)
	require.NoError(t, err)
	defer g0.Close()
	q := newTensor(t, e, memory.F16, 1, 1, 4, 64)
	mix := func(codes, scales *attention.Quantized) *attention.Quantized {
		return &attention.Quantized{Format: quant.Int8, Codes: codes.Codes, Scales: scales.Scales}
	}
	for _, bad := range []struct {
		name string
		k, v *attention.Quantized
		opts attention.QuantizedDecodeOptions
		want string
	}{
		{"paged codes, unpaged scales", mix(k0, g0), v0, attention.QuantizedDecodeOptions{},
			"k.Codes and v.Codes are paged (a paged KV cache's views) but k.Scales is not"},
		{"unpaged codes, paged scales", mix(g0, k0), mix(g0, v0), attention.QuantizedDecodeOptions{},
			"k.Scales is paged (a paged KV cache's view) but k.Codes and v.Codes are not"},
		{"one k unpaged", g0, v0, attention.QuantizedDecodeOptions{}, "k and v must both be views of the same paged KV cache sequences"},
		{"codes of two sequences", k0, v1, attention.QuantizedDecodeOptions{}, "k and v must both be views of the same paged KV cache sequences"},
		{"scales of two sequences", k0, mix(v0, v1), attention.QuantizedDecodeOptions{},
			"k.Scales and v.Scales must be views of the same paged KV cache sequences"},
		{"paged queries", k0, v0, attention.QuantizedDecodeOptions{FP8Queries: &attention.Quantized{Format: quant.E4M3, Codes: k0.Codes, Scales: k0.Scales}},
			"FP8Queries.Codes is a paged KV cache's view"},
	} {
		qq := q
		if bad.opts.FP8Queries != nil {
			qq = nil
		}
		_, err := e.DecodeQuantized(ctx, qq, bad.k, bad.v, bad.opts)
		require.ErrorContains(t, err, bad.want, bad.name)
	}
	res, err := e.DecodeQuantized(ctx, q, k1, v1, attention.QuantizedDecodeOptions{})
	require.NoError(t, err, "sequence 1's own views")
	res.Close()
	require.NoError(t, c.Release(1))
	_, err = e.DecodeQuantized(ctx, q, k1, v1, attention.QuantizedDecodeOptions{})
	require.ErrorIs(t, err, memory.ErrClosed, "views of a released sequence")
	c.Close()
	c.Close()
	err = c.AppendTensors(ctx, 0, k, k)
	require.True(t, errors.Is(err, memory.ErrClosed), "after Close: %v", err)
}

// TestQuantizedKVCacheReserve reserves a sequence's tokens in both caches: pages are committed in
// the codes' and the scales' caches with no tokens held, appends up to there commit no more, and
// the sequence reads as appended.
func TestQuantizedKVCacheReserve(t *testing.T) {
	ctx := context.Background()
	const hq, hk, d, n = 4, 2, 64, 23
	for _, paged := range []bool{false, true} {
		t.Run(fmt.Sprintf("paged=%v", paged), func(t *testing.T) {
			e := quantizedCacheEngine(t, paged)
			r := conformance.NewRand(seed(t))
			cfg := memory.KVCacheConfig{Sequences: 2, MaxLen: 64, Heads: hk, HeadDim: d, DType: memory.F16, Paged: paged}
			if paged {
				cfg.PageTokens = 4
			}
			c := newQuantizedKVCache(t, e, cfg, quant.Int8)
			require.ErrorContains(t, c.Reserve(2, 1), "sequence 2 out of range")
			require.NoError(t, c.Reserve(1, n))
			require.NoError(t, c.WaitBinds(ctx))
			st := c.Stats()
			require.Equal(t, 0, c.Len(1))
			require.Positive(t, st.Codes.SeqPages[1])
			require.Positive(t, st.Scales.SeqPages[1])
			require.Zero(t, st.Codes.SeqPages[0]+st.Scales.SeqPages[0])
			require.Zero(t, st.NeededBytes)
			committed, batches := st.CommittedBytes, st.Codes.BindBatches+st.Scales.BindBatches
			var keys, vals []float32
			for c.Len(1) < n {
				m := min(n-c.Len(1), 5)
				k, v := conformance.Randn(r, memory.F16, m*hk*d), conformance.Randn(r, memory.F16, m*hk*d)
				require.NoError(t, appendQuantized(t, e, c, 1, k, v))
				keys, vals = append(keys, k...), append(vals, v...)
			}
			st = c.Stats()
			require.Equal(t, committed, st.CommittedBytes, "appends within the reservation commit nothing")
			require.Equal(t, batches, st.Codes.BindBatches+st.Scales.BindBatches)
			q := upload(t, e, memory.F16, conformance.Randn(r, memory.F16, hq*d), 1, 1, hq, d)
			checkQuantizedSequence(t, e, c, 1, keys, vals, q)
		})
	}
}

// TestQuantizedKVCacheScalesBindWithCodes grows a sequence of a sparse quantized cache with
// headroom, a step at a time: the scales' pages, which hold 32 times the codes' tokens here,
// are bound only in steps that bind the codes' (so steps that bind are as few as the codes
// make them), every step's tokens are backed in both caches, and the scales bind more than once;
// Reserve binds the scales in one batch.
func TestQuantizedKVCacheScalesBindWithCodes(t *testing.T) {
	e := quantizedCacheEngine(t, false)
	const hk, d = 8, 256
	cfg := memory.KVCacheConfig{Sequences: 1, MaxLen: 1 << 14, Heads: hk, HeadDim: d, DType: memory.F16}
	probe := newQuantizedKVCache(t, e, cfg, quant.Int4)
	scalePage := int(probe.Stats().Scales.PageSize) / (hk * quant.Int4.Groups(d) * 2)
	probe.Close()
	step := max(1, scalePage/4)
	cfg.Headroom, cfg.MaxLen = 2*scalePage, 8*scalePage
	c := newQuantizedKVCache(t, e, cfg, quant.Int4)
	before := c.Stats()
	require.NoError(t, c.Reserve(0, step))
	require.Equal(t, before.Scales.BindBatches+1, c.Stats().Scales.BindBatches, "Reserve binds the scales in one batch")
	r := conformance.NewRand(seed(t))
	k := conformance.Randn(r, memory.F16, step*hk*d)
	codeBinds, scaleBinds := 0, 0
	for c.Len(0)+step <= 6*scalePage {
		before := c.Stats()
		require.NoError(t, appendQuantized(t, e, c, 0, k, k))
		st := c.Stats()
		codes, scales := st.Codes.BindBatches-before.Codes.BindBatches, st.Scales.BindBatches-before.Scales.BindBatches
		if scales > 0 {
			require.Positive(t, codes, "at %d tokens the scales bound pages in a step the codes did not", c.Len(0))
			scaleBinds++
		}
		if codes > 0 {
			codeBinds++
		}
		require.GreaterOrEqual(t, st.Scales.CommittedBytes, st.Scales.NeededBytes)
	}
	require.Greater(t, scaleBinds, 2, "the scales grew page by page")
	t.Logf("%d steps of %d tokens (scale pages of %d): %d bound codes, %d of them scales too", c.Len(0)/step, step, scalePage, codeBinds, scaleBinds)
}

// TestQuantizedKVCacheSparePages: KVCacheConfig.SparePages are the codes' spare pages, and the
// scales keep spare pages in proportion to their bytes a token (Int8, d=128: 2 bytes of scale to
// 128 of codes, so 1 page for 40).
func TestQuantizedKVCacheSparePages(t *testing.T) {
	e := quantizedCacheEngine(t, false)
	cfg := memory.KVCacheConfig{Sequences: 2, MaxLen: 1 << 12, Heads: 2, HeadDim: 128, DType: memory.F16, ChunkPages: 1, SparePages: 40}
	c := newQuantizedKVCache(t, e, cfg, quant.Int8)
	r := conformance.NewRand(seed(t))
	k := conformance.Randn(r, memory.F16, 3*cfg.Heads*cfg.HeadDim)
	require.NoError(t, appendQuantized(t, e, c, 1, k, k))
	var st attention.QuantizedKVCacheStats
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		st = c.Stats()
		if st.Codes.FreePages == 40 && st.Scales.FreePages == 1 || time.Now().After(deadline) {
			break
		}
	}
	require.Equal(t, 40, st.Codes.FreePages, "the codes' spare pages")
	require.Equal(t, 1, st.Scales.FreePages, "the scales' spare pages")
	require.Positive(t, st.Codes.SpareAllocateTime)
}

// TestQuantizedKVCacheAppendsBesideOtherWork appends to a quantized cache, a token at a time,
// while other goroutines make and close tensors of the engine (closing a buffer takes the
// allocator's lock that cache appends hold while they copy) and run kernels (which take the
// engine's lock, then close their scratch): every append returns; a deadlock between the
// cache's, the allocator's and the engine's locks fails the test with the goroutines' stacks.
func TestQuantizedKVCacheAppendsBesideOtherWork(t *testing.T) {
	for _, paged := range []bool{false, true} {
		t.Run(fmt.Sprintf("paged=%v", paged), func(t *testing.T) {
			e := quantizedCacheEngine(t, paged)
			const hk, d = 2, 64
			cfg := memory.KVCacheConfig{Sequences: 1, MaxLen: 256, Heads: hk, HeadDim: d, DType: memory.F16, Headroom: 16, Paged: paged}
			c := newQuantizedKVCache(t, e, cfg, quant.Int8)
			ctx := context.Background()
			k := newTensor(t, e, memory.F16, 1, hk, d)
			q, o := newTensor(t, e, memory.F32, 1, 4, 2, d), newTensor(t, e, memory.F32, 1, 4, 2, d)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			others := []func() error{
				func() error {
					x, err := e.NewTensor(memory.F32, 16)
					if err == nil {
						x.Close()
					}
					return err
				},
				func() error {
					_, err := e.NaiveForwardInto(ctx, o, nil, q, q, q, attention.Options{})
					return err
				},
			}
			errs := make(chan error, len(others))
			for _, work := range others {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						if err := work(); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			done := make(chan struct{})
			go func() {
				select {
				case <-done:
				case <-time.After(2 * time.Minute):
					_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
					panic("quantized cache appends beside other work: no progress in 2 minutes")
				}
			}()
			for range 600 {
				if c.Len(0) == cfg.MaxLen {
					require.NoError(t, c.Release(0))
				}
				require.NoError(t, c.AppendTensors(ctx, 0, k, k))
			}
			close(done)
			close(stop)
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
		})
	}
}
