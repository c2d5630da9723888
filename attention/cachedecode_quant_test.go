package attention_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/attention/reference"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/quant"
)

// decodeCacheTiers are the tiers the quantized cache decode tests force for queries of type dt:
// those the device runs quantized decode at that take dt (all read scales; the coopmat tier on
// GPUs with it, fp16 queries).
func decodeCacheTiers(e *attention.Engine, dt memory.DType) []devices.Tier {
	var out []devices.Tier
	for _, tier := range e.QuantizedDecodeTiers() {
		if slices.Contains(attention.QuantizedDecodeInputs(tier), dt) {
			out = append(out, tier)
		}
	}
	return out
}

// TestDecodeQuantizedCache decodes sequences of Int8 and Int4 caches (Int4 with key scales,
// decoded with QueryScales), sparse (the codes in two buffers where maxStorageBufferRange is
// lavapipe's, the scales in one) and paged (read through block tables: sequences of many pages
// of 16 tokens, most with a partial last one, the scales' pages other than the codes'), at every
// tier the device decodes quantized K/V at (the coopmat tier without the scaled and FP8
// queries it refuses), in one call, out of order, with varlen lengths and new tokens (a
// sequence with none): outputs and logsumexps equal, bit for bit, DecodeQuantizedInto's over
// packed copies of the same codes and scales (the same splits); with one new token each and one
// split (three too where chunks interleave tiles), DecodeQuantized's over each sequence's View (paged
// views in the paged layout), for float queries and (Int8) for FP8 queries.
func TestDecodeQuantizedCache(t *testing.T) {
	ctx := context.Background()
	const hq, hk, d = 8, 2, 32
	for _, paged := range []bool{false, true} {
		for _, f := range []quant.Format{quant.Int8, quant.Int4} {
			t.Run(fmt.Sprintf("paged=%v/%v", paged, f), func(t *testing.T) {
				e := quantizedCacheEngine(t, paged)
				s := seed(t)
				replay(t, s)
				r := conformance.NewRand(s)
				var opts attention.QuantizedKVCacheOptions
				var ks *quant.KeyScales
				scaled := f == quant.Int4
				if scaled {
					ks, opts.KeyScales = calibratedKeyScales(t, e, rand.New(rand.NewPCG(s, 0x9a24)), hk, d)
				}
				// Regions of 16 MiB of codes: a 128 MiB buffer holds 8, so 10 sequences take two.
				maxLen := 16 << 20 / (hk * d / f.PerWord() * 4)
				cfg := memory.KVCacheConfig{Sequences: 10, MaxLen: maxLen, Heads: hk, HeadDim: d, DType: memory.F16, Headroom: 8, Paged: paged}
				c, err := attention.NewQuantizedKVCache(e, cfg, f, opts)
				require.NoError(t, err)
				t.Cleanup(c.Close)
				host := newQuantizedHost(c, ks)
				if paged { // the scales' pages go to the sequences in another order than the codes'
					_, scales := attention.QuantizedKVCacheParts(c)
					require.NoError(t, scales.Reserve(cfg.Sequences-1, 20)) // the last to take pages in each batch
				}
				lens := make([]int, cfg.Sequences)
				for i := range lens {
					lens[i] = 1 + r.IntN(150)
				}
				for done := false; !done; {
					done = true
					var appends []memory.TensorAppend
					for seq, n := range lens {
						if have := len(host.keys[seq]) / (hk * d); have < n {
							m := min(n-have, 1+r.IntN(40))
							k, v := conformance.Randn(r, cfg.DType, m*hk*d), conformance.Randn(r, cfg.DType, m*hk*d)
							appends = append(appends, host.tensors(t, e, seq, k, v))
							host.add(seq, k, v)
							done = false
						}
					}
					require.NoError(t, c.AppendTensorsBatch(ctx, appends))
					closeAppends(appends)
				}
				seqs := []int{9, 0, 5, 3, 8, 1}
				if !paged && e.Profile().MaxStorageBufferRange <= 128<<20 {
					codes, _ := attention.QuantizedKVCacheParts(c)
					groups, err := codes.Batch(seqs)
					require.NoError(t, err)
					require.Greater(t, len(groups), 1, "the sequences' codes lie in one buffer")
				}
				var qs *memory.Tensor
				if scaled {
					qs = upload(t, e, memory.F32, ks.Q, hk, d)
				}
				// Packed copies of the sequences' codes and scales.
				hkq, hvq, total := host.quantized(t, seqs...)
				pk, pv := uploadQuantized(t, e, hkq, []int{total, hk, d}), uploadQuantized(t, e, hvq, []int{total, hk, d})
				cuK := []int{0}
				for _, seq := range seqs {
					cuK = append(cuK, cuK[len(cuK)-1]+lens[seq])
				}
				lq := make([]int, len(seqs))
				for i := range lq {
					lq[i] = r.IntN(4) // 0 to 3 new tokens
				}
				lq[0] = max(lq[0], 1)
				cuQ := reference.Cumulative(lq)
				q := upload(t, e, cfg.DType, conformance.Randn(r, cfg.DType, cuQ[len(seqs)]*hq*d), cuQ[len(seqs)], hq, d)
				for _, tier := range decodeCacheTiers(e, cfg.DType) {
					if scaled && tier == devices.TierCoopMat {
						continue // scaled queries are refused there
					}
					for _, causal := range []bool{false, true} {
						for _, splits := range []int{0, 3} {
							what := fmt.Sprintf("%v, causal %v, splits %d", tier, causal, splits)
							dopts := attention.QuantizedDecodeOptions{QueryScales: qs, DecodeOptions: attention.DecodeOptions{
								Options: attention.Options{LSE: true, Causal: causal, CuSeqlensQ: cuQ, Tier: tier}, Splits: splits}}
							got := newResult(t, e, cfg.DType, cuQ[len(seqs)], hq, d)
							kernel, err := e.DecodeQuantizedCache(ctx, got.O, got.LSE, q, c, seqs, dopts)
							require.NoError(t, err, what)
							want := newResult(t, e, cfg.DType, cuQ[len(seqs)], hq, d)
							dense := dopts
							dense.CuSeqlensK = cuK
							wantKernel, err := e.DecodeQuantizedInto(ctx, want.O, want.LSE, q, pk, pv, dense)
							require.NoError(t, err, what)
							require.Equal(t, wantKernel, kernel, what)
							requireSameResult(t, what, got, want)
						}
					}
					// One new token each, one split (at the subgroup and coopmat tiers three too, their
					// chunks interleaving tiles whatever the lengths): DecodeQuantized on each
					// sequence's views.
					perSeqSplits := []int{1}
					if tier != devices.TierScalar {
						perSeqSplits = append(perSeqSplits, 3)
					}
					for _, splits := range perSeqSplits {
						q1 := upload(t, e, cfg.DType, conformance.Randn(r, cfg.DType, len(seqs)*hq*d), len(seqs), 1, hq, d)
						dopts := attention.QuantizedDecodeOptions{QueryScales: qs, DecodeOptions: attention.DecodeOptions{
							Options: attention.Options{LSE: true, Tier: tier}, Splits: splits}}
						got := newResult(t, e, cfg.DType, len(seqs), 1, hq, d)
						_, err = e.DecodeQuantizedCache(ctx, got.O, got.LSE, q1, c, seqs, dopts)
						require.NoError(t, err)
						var fp8 *attention.Quantized
						var gotFP8 *attention.Result
						if !scaled && tier != devices.TierCoopMat { // FP8 queries are refused there
							qq, err := quant.Quantize(quant.E4M3, conformance.Randn(r, memory.F32, len(seqs)*hq*d), len(seqs), hq, d)
							require.NoError(t, err)
							fp8 = uploadQuantized(t, e, qq, []int{len(seqs), 1, hq, d})
							gotFP8 = newResult(t, e, memory.F32, len(seqs), 1, hq, d)
							fopts := dopts
							fopts.FP8Queries = fp8
							_, err = e.DecodeQuantizedCache(ctx, gotFP8.O, gotFP8.LSE, nil, c, seqs, fopts)
							require.NoError(t, err)
						}
						for i, seq := range seqs {
							kv, vv, err := c.View(ctx, seq)
							require.NoError(t, err)
							_, codes := kv.Codes.Pages()
							_, scales := kv.Scales.Pages()
							require.Equal(t, paged, codes != nil && scales != nil, "paged views")
							if paged {
								require.NotEqual(t, codes, scales, "the codes' and the scales' block tables differ")
							}
							one := func(x *memory.Tensor, last int) *memory.Tensor {
								return view(t, x, []int{1, 1, hq, last}, x.Strides, i*hq*last)
							}
							oneResult := func(res *attention.Result) *attention.Result {
								return &attention.Result{O: one(res.O, d), LSE: view(t, res.LSE, []int{1, 1, hq}, res.LSE.Strides, i*hq)}
							}
							want, err := e.DecodeQuantized(ctx, one(q1, d), kv, vv, dopts)
							require.NoError(t, err)
							requireSameResult(t, fmt.Sprintf("%v, splits %d: sequence %d", tier, splits, seq), oneResult(got), want)
							want.Close()
							if fp8 != nil {
								fopts := dopts
								fopts.FP8Queries = &attention.Quantized{Format: quant.E4M3, Codes: one(fp8.Codes, d/4), Scales: one(fp8.Scales, 1)}
								want, err := e.DecodeQuantized(ctx, nil, kv, vv, fopts)
								require.NoError(t, err)
								requireSameResult(t, fmt.Sprintf("%v, splits %d: FP8 queries, sequence %d", tier, splits, seq), oneResult(gotFP8), want)
								want.Close()
							}
							kv.Close()
							vv.Close()
						}
					}
				}
			})
		}
	}
}

// TestDecodeQuantizedCacheBadInputs: malformed DecodeQuantizedCache calls return errors naming
// what is wrong, in both layouts, and leak nothing.
func TestDecodeQuantizedCacheBadInputs(t *testing.T) {
	ctx := context.Background()
	const hq, hk, d = 4, 2, 32
	for _, paged := range []bool{false, true} {
		t.Run(fmt.Sprintf("paged=%v", paged), func(t *testing.T) {
			e := quantizedCacheEngine(t, paged)
			r := conformance.NewRand(seed(t))
			cfg := memory.KVCacheConfig{Sequences: 3, MaxLen: 64, Heads: hk, HeadDim: d, DType: memory.F16, Paged: paged}
			c := newQuantizedKVCache(t, e, cfg, quant.Int8)
			host := newQuantizedHost(c, nil)
			var appends []memory.TensorAppend
			for seq, n := range []int{5, 7} {
				appends = append(appends, host.tensors(t, e, seq, conformance.Randn(r, memory.F16, n*hk*d), conformance.Randn(r, memory.F16, n*hk*d)))
			}
			require.NoError(t, c.AppendTensorsBatch(ctx, appends))
			closeAppends(appends)
			q := newTensor(t, e, memory.F16, 2, 1, hq, d)
			o := newTensor(t, e, memory.F16, 2, 1, hq, d)
			o32 := newTensor(t, e, memory.F32, 2, 1, hq, d)
			wrongScales := newTensor(t, e, memory.F32, hk, 2*d)
			fp8 := &attention.Quantized{Format: quant.E4M3, Codes: newTensor(t, e, memory.F32, 2, 1, hq, d/4), Scales: newTensor(t, e, memory.BF16, 2, 1, hq, 1)}
			other := secondEngine(t)
			var none attention.QuantizedDecodeOptions
			with := func(f func(*attention.QuantizedDecodeOptions)) attention.QuantizedDecodeOptions {
				o := none
				f(&o)
				return o
			}
			for _, c := range []struct {
				name  string
				e     *attention.Engine
				q, o  *memory.Tensor
				cache *attention.QuantizedKVCache
				seqs  []int
				opts  attention.QuantizedDecodeOptions
				want  string
			}{
				{"nil cache", e, q, o, nil, []int{0, 1}, none, "attention: cache is nil"},
				{"foreign", other, q, o, c, []int{0, 1}, none, "attention: cache: " + memory.ErrForeign.Error()},
				{"empty", e, q, o, c, []int{0, 2}, none, "sequence 2 is empty"},
				{"twice", e, q, o, c, []int{1, 1}, none, "attention: quantized kv cache: sequence 1 is twice in the batch"},
				{"range", e, q, o, c, []int{0, 3}, none, "attention: quantized kv cache: sequence 3 out of range [0, 3)"},
				{"no sequences", e, q, o, c, nil, none, "attention: quantized kv cache: batch of no sequences"},
				{"batch", e, q, o, c, []int{0}, none, "attention: q has batch 2 for 1 cache sequences"},
				{"cuK", e, q, o, c, []int{0, 1}, with(func(o *attention.QuantizedDecodeOptions) { o.CuSeqlensK = []int{0, 5, 12} }),
					"DecodeQuantizedCache takes the keys' lengths from the cache: Options.CuSeqlensK must be nil"},
				{"cuQ", e, q, o, c, []int{0, 1}, with(func(o *attention.QuantizedDecodeOptions) { o.CuSeqlensQ = []int{0, 1} }),
					"CuSeqlensQ has 2 entries for 2 sequences, want 3"},
				{"o dtype", e, q, o32, c, []int{0, 1}, none, "attention: o is f32 but q is f16"},
				{"splits", e, q, o, c, []int{0, 1}, with(func(o *attention.QuantizedDecodeOptions) { o.Splits = -1 }), "DecodeOptions.Splits must be >= 0"},
				{"query scales", e, q, o, c, []int{0, 1}, with(func(o *attention.QuantizedDecodeOptions) { o.QueryScales = wrongScales }),
					"QuantizedDecodeOptions.QueryScales must be a contiguous f32 tensor of shape [2 32]"},
				{"q and FP8", e, q, o, c, []int{0, 1}, with(func(o *attention.QuantizedDecodeOptions) { o.FP8Queries = fp8 }),
					"q and QuantizedDecodeOptions.FP8Queries are both set"},
				{"no q", e, nil, o, c, []int{0, 1}, none, "attention: q is nil"},
			} {
				t.Run(c.name, func(t *testing.T) {
					before := liveStats(e)
					_, err := c.e.DecodeQuantizedCache(ctx, c.o, nil, c.q, c.cache, c.seqs, c.opts)
					require.ErrorContains(t, err, c.want)
					require.Equal(t, before, liveStats(e), "leaked")
				})
			}
		})
	}
}
