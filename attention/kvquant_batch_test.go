package attention_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/quant"
	"github.com/vkattn/vkattn/vk"
)

// quantizedHost is what was appended to the sequences of a QuantizedKVCache, on the host: each
// sequence's float keys and values, [len, Hk, D], and the key scales of the cache, if any.
type quantizedHost struct {
	f          quant.Format
	cfg        memory.KVCacheConfig
	ks         *quant.KeyScales
	keys, vals [][]float32
}

func newQuantizedHost(c *attention.QuantizedKVCache, ks *quant.KeyScales) *quantizedHost {
	cfg := c.Config()
	return &quantizedHost{f: c.Format(), cfg: cfg, ks: ks, keys: make([][]float32, cfg.Sequences), vals: make([][]float32, cfg.Sequences)}
}

// tensors uploads k and v, [m, Hk, D] or [1, m, Hk, D] (alternately, by m), as the append of
// sequence seq; the caller closes them (closeAppends).
func (h *quantizedHost) tensors(t *testing.T, e *attention.Engine, seq int, k, v []float32) memory.TensorAppend {
	t.Helper()
	m := len(k) / (h.cfg.Heads * h.cfg.HeadDim)
	shape := []int{m, h.cfg.Heads, h.cfg.HeadDim}
	if m%2 == 0 {
		shape = append([]int{1}, shape...)
	}
	kt, err := e.Upload(context.Background(), h.cfg.DType, k, shape...)
	require.NoError(t, err)
	vt, err := e.Upload(context.Background(), h.cfg.DType, v, shape...)
	require.NoError(t, err)
	return memory.TensorAppend{Seq: seq, K: kt, V: vt}
}

func closeAppends(appends []memory.TensorAppend) {
	for _, ap := range appends {
		ap.K.Close()
		ap.V.Close()
	}
}

// add records an append that succeeded.
func (h *quantizedHost) add(seq int, k, v []float32) {
	h.keys[seq], h.vals[seq] = append(h.keys[seq], k...), append(h.vals[seq], v...)
}

// quantized is quant.Quantize of sequences seqs' keys (scaled by the key scales) and values,
// one after another: the codes and scales a cache holding them must have.
func (h *quantizedHost) quantized(t *testing.T, seqs ...int) (k, v *quant.Tensor, tokens int) {
	t.Helper()
	var keys, vals []float32
	for _, s := range seqs {
		keys, vals = append(keys, h.keys[s]...), append(vals, h.vals[s]...)
	}
	if h.ks != nil {
		var err error
		keys, err = h.ks.ScaleKeys(keys)
		require.NoError(t, err)
	}
	tokens = len(keys) / (h.cfg.Heads * h.cfg.HeadDim)
	k, err := quant.Quantize(h.f, keys, tokens, h.cfg.Heads, h.cfg.HeadDim)
	require.NoError(t, err)
	v, err = quant.Quantize(h.f, vals, tokens, h.cfg.Heads, h.cfg.HeadDim)
	require.NoError(t, err)
	return k, v, tokens
}

// check fails unless every sequence of c holds, bit for bit, the codes and scales of what h
// recorded for it (nothing where nothing was).
func (h *quantizedHost) check(t *testing.T, c *attention.QuantizedKVCache) {
	t.Helper()
	for seq := range h.cfg.Sequences {
		n := len(h.keys[seq]) / (h.cfg.Heads * h.cfg.HeadDim)
		require.Equal(t, n, c.Len(seq), "sequence %d", seq)
		if n == 0 {
			continue
		}
		kq, vq, err := c.View(context.Background(), seq)
		require.NoError(t, err)
		wk, wv, _ := h.quantized(t, seq)
		requireSameQuantized(t, wk, kq)
		requireSameQuantized(t, wv, vq)
		kq.Close()
		vq.Close()
	}
}

// TestQuantizedKVCacheAppendBatch appends to Int8 and Int4 caches of f32 and f16 keys and
// values, in the sparse and the paged layout, with and without key scales, in batches of varying
// sequences and sizes (sequences left out of some, one batch whose sequences share their source
// tensors, [n, Hk, D] and [1, n, Hk, D] sources), and the same tokens to a second cache one
// AppendTensors at a time: both hold quant.Quantize's codes and scales of them (of
// ks.ScaleKeys(k) for the keys), bit for bit. The scratch the appends reuse is reported by Stats
// and freed by Trim (appends then work as before) and with the caches: nothing is left
// allocated.
func TestQuantizedKVCacheAppendBatch(t *testing.T) {
	ctx := context.Background()
	const hk, d = 2, 32
	for _, paged := range []bool{false, true} {
		for _, f := range []quant.Format{quant.Int8, quant.Int4} {
			for _, dt := range []memory.DType{memory.F32, memory.F16} {
				for _, scaled := range []bool{false, true} {
					t.Run(fmt.Sprintf("paged=%v/%v/%v/scaled=%v", paged, f, dt, scaled), func(t *testing.T) {
						e := quantizedCacheEngine(t, paged)
						s := seed(t)
						replay(t, s)
						r := conformance.NewRand(s)
						var opts attention.QuantizedKVCacheOptions
						var ks *quant.KeyScales
						if scaled {
							ks, opts.KeyScales = calibratedKeyScales(t, e, rand.New(rand.NewPCG(s, 0x9a23)), hk, d)
						}
						before := liveStats(e)
						cfg := memory.KVCacheConfig{Sequences: 4, MaxLen: 96, Heads: hk, HeadDim: d, DType: dt, Headroom: 3, Paged: paged}
						if paged {
							cfg.PageTokens = 5
						}
						var caches [2]*attention.QuantizedKVCache // batched, one by one
						for i := range caches {
							c, err := attention.NewQuantizedKVCache(e, cfg, f, opts)
							require.NoError(t, err)
							caches[i] = c
						}
						host := newQuantizedHost(caches[0], ks)
						for step := range 6 {
							var appends []memory.TensorAppend
							var shared memory.TensorAppend
							if step == 3 { // every sequence appends the same tensors
								m := 1 + r.IntN(9)
								k, v := conformance.Randn(r, dt, m*hk*d), conformance.Randn(r, dt, m*hk*d)
								shared = host.tensors(t, e, 0, k, v)
								for seq := range cfg.Sequences {
									appends = append(appends, memory.TensorAppend{Seq: seq, K: shared.K, V: shared.V})
									host.add(seq, k, v)
								}
							} else {
								for _, seq := range r.Perm(cfg.Sequences) {
									if r.IntN(4) == 0 {
										continue // left out of this batch
									}
									m := 1 + r.IntN(9)
									k, v := conformance.Randn(r, dt, m*hk*d), conformance.Randn(r, dt, m*hk*d)
									appends = append(appends, host.tensors(t, e, seq, k, v))
									host.add(seq, k, v)
								}
							}
							require.NoError(t, caches[0].AppendTensorsBatch(ctx, appends))
							for _, ap := range appends {
								require.NoError(t, caches[1].AppendTensors(ctx, ap.Seq, ap.K, ap.V))
							}
							if step == 3 {
								closeAppends([]memory.TensorAppend{shared})
							} else {
								closeAppends(appends)
							}
						}
						for _, c := range caches {
							host.check(t, c)
							if paged {
								require.Positive(t, c.Stats().ScratchBytes)
							} else {
								require.Zero(t, c.Stats().ScratchBytes, "the sparse layout quantizes in place")
							}
							c.Trim()
							require.Zero(t, c.Stats().ScratchBytes)
						}
						m := 1 + r.IntN(9)
						k, v := conformance.Randn(r, dt, m*hk*d), conformance.Randn(r, dt, m*hk*d)
						last := host.tensors(t, e, 1, k, v)
						host.add(1, k, v)
						for _, c := range caches {
							require.NoError(t, c.AppendTensors(ctx, 1, last.K, last.V), "after Trim")
							host.check(t, c)
						}
						closeAppends([]memory.TensorAppend{last})
						require.NoError(t, caches[0].AppendTensorsBatch(ctx, nil), "an empty batch")
						for _, c := range caches {
							c.Close()
						}
						require.Equal(t, before, liveStats(e), "leaked")
					})
				}
			}
		}
	}
}

// TestQuantizedKVCacheAppendBatchFailures: a batch with a sequence listed twice, out of range,
// with a bad tensor, or over MaxLen is refused naming it, and one whose pages run out (MaxPages),
// in the codes' cache or, after the codes' append, in the scales' (the codes then truncated
// back), fails with vk.ErrOutOfDeviceMemory; either way no sequence of the batch changes, in
// both caches. The sequences then take the same appends. Nothing is left allocated.
func TestQuantizedKVCacheAppendBatchFailures(t *testing.T) {
	ctx := context.Background()
	const hk, d = 2, 32
	for _, paged := range []bool{false, true} {
		t.Run(fmt.Sprintf("paged=%v", paged), func(t *testing.T) {
			e := quantizedCacheEngine(t, paged)
			r := conformance.NewRand(seed(t))
			before := liveStats(e)
			// MaxPages 4: two pages of K and two of V in each cache, a page (at most four
			// tokens in the paged layout) for each of two sequences.
			cfg := memory.KVCacheConfig{Sequences: 4, MaxLen: 64, Heads: hk, HeadDim: d, DType: memory.F16, MaxPages: 4, Paged: paged}
			if paged {
				cfg.PageTokens = 4
			}
			c, err := attention.NewQuantizedKVCache(e, cfg, quant.Int8)
			require.NoError(t, err)
			codes, scales := attention.QuantizedKVCacheParts(c)
			host := newQuantizedHost(c, nil)
			// Sequence 0 holds a token; the batches append to it and to sequence 1.
			k0, v0 := conformance.Randn(r, memory.F16, hk*d), conformance.Randn(r, memory.F16, hk*d)
			first := host.tensors(t, e, 0, k0, v0)
			require.NoError(t, c.AppendTensorsBatch(ctx, []memory.TensorAppend{first}))
			host.add(0, k0, v0)
			closeAppends([]memory.TensorAppend{first})
			batch := func(ms ...int) ([]memory.TensorAppend, [][2][]float32) {
				var appends []memory.TensorAppend
				var data [][2][]float32
				for seq, m := range ms {
					k, v := conformance.Randn(r, memory.F16, m*hk*d), conformance.Randn(r, memory.F16, m*hk*d)
					appends = append(appends, host.tensors(t, e, seq, k, v))
					data = append(data, [2][]float32{k, v})
				}
				return appends, data
			}
			unchanged := func(what string) {
				t.Helper()
				host.check(t, c)
				for _, part := range []*memory.KVCache{codes, scales} {
					for seq := range cfg.Sequences {
						require.Equal(t, c.Len(seq), part.Len(seq), "%s: sequence %d", what, seq)
					}
				}
				st := c.Stats()
				require.Equal(t, st.Codes.SeqPages[:2], st.Scales.SeqPages[:2], "%s: pages", what)
			}
			appends, data := batch(3, 2)
			bad := newTensor(t, e, memory.F16, 3, 4, d)
			for want, list := range map[string][]memory.TensorAppend{
				"attention: quantized kv cache: sequence 1 is appended to twice in one batch": {appends[0], appends[1], appends[1]},
				"attention: quantized kv cache: sequence 4 out of range [0, 4)":               {appends[0], {Seq: 4, K: appends[1].K, V: appends[1].V}},
				"append to sequence 1: v is f16 [3 4 32], want f16":                           {appends[0], {Seq: 1, K: appends[0].K, V: bad}},
				"append to sequence 1: k is nil":                                              {appends[0], {Seq: 1, V: appends[1].V}},
				"append to sequence 1: k has 3 tokens, v 2":                                   {appends[0], {Seq: 1, K: appends[0].K, V: appends[1].V}},
			} {
				require.ErrorContains(t, c.AppendTensorsBatch(ctx, list), want)
				unchanged(want)
			}
			// A source closed: the quantizer refuses it after the caches took the tokens' pages
			// (in place), which go back.
			gone := host.tensors(t, e, 1, make([]float32, 2*hk*d), make([]float32, 2*hk*d))
			gone.V.Close()
			require.ErrorIs(t, c.AppendTensorsBatch(ctx, []memory.TensorAppend{appends[0], gone}), memory.ErrClosed)
			unchanged("a closed source")
			closeAppends([]memory.TensorAppend{gone})
			long := host.tensors(t, e, 1, make([]float32, 65*hk*d), make([]float32, 65*hk*d))
			err = c.AppendTensorsBatch(ctx, []memory.TensorAppend{appends[0], long})
			require.ErrorContains(t, err, "attention: quantized kv cache: sequence 1 holds 0 tokens; 65 more exceed MaxLen 64")
			unchanged("over MaxLen")
			closeAppends([]memory.TensorAppend{long})

			// Sequence 2 takes the codes' last pages: sequence 1 finds none.
			require.NoError(t, codes.Reserve(2, 1))
			err = c.AppendTensorsBatch(ctx, appends)
			require.ErrorIs(t, err, vk.ErrOutOfDeviceMemory)
			require.ErrorContains(t, err, "attention: quantized kv cache: codes: ")
			require.NoError(t, codes.Release(2))
			unchanged("out of the codes' pages")

			// Sequence 3 takes the scales' last pages: the codes' append is undone.
			require.NoError(t, scales.Reserve(3, 1))
			err = c.AppendTensorsBatch(ctx, appends)
			require.ErrorIs(t, err, vk.ErrOutOfDeviceMemory)
			require.ErrorContains(t, err, "attention: quantized kv cache: scales: ")
			unchanged("out of the scales' pages")

			require.NoError(t, scales.Release(3))
			require.NoError(t, c.AppendTensorsBatch(ctx, appends))
			for i, x := range data {
				host.add(i, x[0], x[1])
			}
			unchanged("appended")
			c.Close()
			closeAppends(appends)
			bad.Close()
			require.Equal(t, before, liveStats(e), "leaked")
		})
	}
}
