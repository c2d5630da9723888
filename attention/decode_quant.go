package attention

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/quant"
	"github.com/vkattn/vkattn/shaders"
	"github.com/vkattn/vkattn/vk"
)

// QuantizedDecodeOptions are DecodeQuantized's options: Decode's, and how the queries come.
type QuantizedDecodeOptions struct {
	DecodeOptions
	// QueryScales, if set, are the query side of RoPE-aware key scaling (quant.KeyScales.Q, for
	// keys quantized after quant.KeyScales.ScaleKeys): an f32 tensor [Hk, D], contiguous; the
	// kernel multiplies channel c of every query head of KV head h by QueryScales[h, c] (one
	// float32 multiplication, as quant.KeyScales.ScaleQueries does) before anything else. Not
	// with FP8Queries: those are scaled before they are quantized.
	QueryScales *memory.Tensor
	// FP8Queries, if set, are the queries, quantized to FP8 E4M3 (quant.Quantize(quant.E4M3,
	// ...), after quant.KeyScales.ScaleQueries where the keys were scaled), shaped as q would be;
	// q must then be nil. The kernel dequantizes them: there is no float8 type in Vulkan.
	FP8Queries *Quantized
}

// DecodeQuantized is Decode over quantized K and V (quant.Int8 or quant.Int4, both the same
// format, shaped [B, Lk, Hk, D] or varlen [totalK, Hk, D] as Decode's k and v), dequantized
// inside the kernel as package quant specifies. It takes everything Decode takes, the same way,
// and gives the same numerics over the dequantized values (fp32 accumulation): K and V are
// dequantized as each tile is staged, so each byte of their codes and scales is read once per
// (chunk, KV head). The queries are q (f32, f16 or bf16; o has q's type), optionally scaled by
// opts.QueryScales, or opts.FP8Queries with q nil (o is then f32). At the coopmat tier the
// codes are staged as fp16 matrices and the scales applied to scores and probabilities: it takes
// fp16 q only, and neither QueryScales nor FP8Queries (a forced coopmat tier is then an error
// naming the option), but for the calls its tensor-core kernels take (decode_int8_imma and
// decode_int4_imma: dense K and V in whole 16-byte units, at most 16 rows per (sequence, KV
// head), head dims that are multiples of 32 up to 128, INT4 of one scale group a row, on a
// device with int8 matrices), which multiply the codes as int8 matrices (INT4's unpacked to int8
// in shared memory) and the queries and probabilities as two int8 terms each (about 15 bits),
// whatever the queries, where DecodeIMMAEnv turns them on (off by default: not yet run on a
// GPU); the automatic choice then takes them first wherever they take the call. K and V may be
// the views of a paged QuantizedKVCache (View), whose codes and scales the kernels read through
// their block tables (memory.Tensor.Pages), as Decode reads a paged memory.KVCache's views.
//
// Errors are Decode's, naming the argument (k.Codes, v.Scales, FP8Queries, ...), and those of
// the quantized inputs: a format K and V do not share or that is not theirs, codes or scales
// missing or of the wrong type or shape, query scales with FP8 queries, paged codes with unpaged
// scales or the reverse, K's and V's codes or scales of different sequences. Nothing is
// dispatched then.
func (e *Engine) DecodeQuantized(ctx context.Context, q *memory.Tensor, k, v *Quantized, opts QuantizedDecodeOptions) (*Result, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	dt, shape := memory.F32, []int(nil)
	switch fp8 := opts.FP8Queries; {
	case q != nil:
		dt, shape = q.DType, q.Shape
	case fp8 == nil:
		return nil, fmt.Errorf("attention: q is nil")
	case fp8.Codes == nil:
		return nil, fmt.Errorf("attention: FP8Queries.Codes is nil")
	default:
		shape = fp8.Shape()
	}
	return e.newResult(dt, shape, opts.LSE, func(o, lse *memory.Tensor) (string, error) {
		return e.DecodeQuantizedInto(ctx, o, lse, q, k, v, opts)
	})
}

// DecodeQuantizedInto is DecodeQuantized into o (shaped as the queries, typed as q, any type with
// FP8 queries) and, if not nil, lse (fp32, the queries' shape without the head dim). It returns
// the kernels that ran: the decode variant (decode_int8_subgroup, ...), with "+merge" where the
// keys were split into more than one chunk ("+lastmerge" where the decode kernel merged them).
func (e *Engine) DecodeQuantizedInto(ctx context.Context, o, lse, q *memory.Tensor, k, v *Quantized, opts QuantizedDecodeOptions) (string, error) {
	return e.runBuilt(ctx, func() (*plan, error) { return e.planDecodeQuantized(o, lse, q, k, v, opts) })
}

// TimeDecodeQuantized runs the quantized decode (both dispatches) warmup+iters times in one
// submission and returns the device time of each timed run, and the kernels that ran.
func (e *Engine) TimeDecodeQuantized(ctx context.Context, o, lse, q *memory.Tensor, k, v *Quantized, opts QuantizedDecodeOptions, warmup, iters int) ([]time.Duration, string, error) {
	return e.timeBuilt(ctx, func() (*plan, error) { return e.planDecodeQuantized(o, lse, q, k, v, opts) }, warmup, iters)
}

// decodeOps are the quantized decode kernels by K/V format.
var decodeOps = map[quant.Format]shaders.Op{quant.Int8: shaders.OpDecodeInt8, quant.Int4: shaders.OpDecodeInt4}

// quant.glsl's QMODE.
const (
	qFloat  = 0
	qScaled = 1
	qFP8    = 2
)

func (e *Engine) planDecodeQuantized(o, lse, q *memory.Tensor, k, v *Quantized, opts QuantizedDecodeOptions) (*plan, error) {
	c, kern, err := e.newQuantizedCall(o, lse, q, k, v, opts)
	if err != nil {
		return nil, err
	}
	return e.planDecodeCall(c, opts.Splits, kern)
}

// Words of a quantized decode's sequence table from the chunk size on (quant.glsl's SEQ_*), as
// indices into decodeKernel.seq, which follows the chunk size.
const (
	seqKScale      = 0  // offset, token and head strides of K's scales
	seqVScale      = 3  // ... of V's
	seqQScale      = 6  // ... of the FP8 queries'
	seqQKeyScale   = 9  // offset of the query scales
	seqScaleStarts = 10 // where the sequences' first tokens of the scales are, or 0 (kvScaleLayout)
	seqScalePages  = 11 // paged: where the scales' block table is; then its tokens per page
	seqQuantWords  = 13
)

// kernelWord is the index of decodeKernel.seq's word i in the sequence table of a dispatch over
// m sequences: after the cumulative lengths (2(m+1) words) and the chunk size.
func kernelWord(m, i int) int { return 2*(m+1) + 1 + i }

// newQuantizedCall validates a quantized decode call and returns it with its kernel.
func (e *Engine) newQuantizedCall(o, lse, q *memory.Tensor, k, v *Quantized, opts QuantizedDecodeOptions) (*call, decodeKernel, error) {
	var kern decodeKernel
	if err := e.usable(); err != nil {
		return nil, kern, err
	}
	qop, mode := floatOperand("q", q), uint32(qFloat)
	if opts.FP8Queries != nil {
		if q != nil {
			return nil, kern, fmt.Errorf("attention: q and QuantizedDecodeOptions.FP8Queries are both set: give the queries one way")
		}
		if opts.QueryScales != nil {
			return nil, kern, fmt.Errorf("attention: QuantizedDecodeOptions.QueryScales: FP8 queries are scaled before they are quantized (quant.KeyScales.ScaleQueries, then quant.Quantize), not in the kernel")
		}
		qop, mode = quantizedOperand("FP8Queries", opts.FP8Queries, quant.E4M3), qFP8
	}
	kop := quantizedOperand("k", k, quant.Int8, quant.Int4)
	vop := quantizedOperand("v", v, quant.Int8, quant.Int4)
	c, err := e.newCallOf([]operand{qop, kop, vop, floatOperand("o", o)}, lse, opts.Options)
	if err != nil {
		return nil, kern, err
	}
	if v.Format != k.Format {
		return nil, kern, fmt.Errorf("attention: v is %v but k is %v: k and v must share a format", v.Format, k.Format)
	}
	if err := checkPagedScales(k, v); err != nil {
		return nil, kern, err
	}
	// The scales are not the call's primary tensors: where they are views of a KV cache
	// (QuantizedKVCache), the dispatch waits for their binds as for the codes'; where they are
	// paged, the kernel reads their block table (scalePages).
	c.after = memory.BindPoints(k.Scales, v.Scales)
	c.scales = k.Scales
	sh := c.sh
	// Bindings 8-11: the scales of K, V and the FP8 queries, the query scales; o's buffer, never
	// read, where there is nothing.
	none := vk.BufferRange{Buffer: o.Buffer().Buffer}
	qScales, qKeyScales := none, none
	seq := make([]uint32, seqQuantWords)
	copy(seq[seqKScale:], scaleWords(k.Scales))
	copy(seq[seqVScale:], scaleWords(v.Scales))
	if mode == qFP8 {
		qScales = vk.BufferRange{Buffer: opts.FP8Queries.Scales.Buffer().Buffer}
		copy(seq[seqQScale:], scaleWords(opts.FP8Queries.Scales))
	}
	if qs := opts.QueryScales; qs != nil {
		if err := e.checkQueryScales(qs, sh, o, lse); err != nil {
			return nil, kern, err
		}
		mode, qKeyScales, seq[seqQKeyScale] = qScaled, vk.BufferRange{Buffer: qs.Buffer().Buffer}, uint32(qs.Offset)
	}
	dt := o.DType
	if q != nil {
		dt = q.DType
	}
	return c, decodeKernel{
		op:          decodeOps[k.Format],
		dt:          dt,
		wideQueries: wideQueries(opts),
		spec:        []uint32{mode, uint32(k.Format.GroupSize(sh.d)), kvPaged(k)},
		seq:         seq,
		bindings: []vk.BufferRange{{Buffer: k.Scales.Buffer().Buffer}, {Buffer: v.Scales.Buffer().Buffer},
			qScales, qKeyScales},
	}, nil
}

// wideQueries names the option of opts that makes the queries FP8 or scaled, or is empty.
func wideQueries(opts QuantizedDecodeOptions) string {
	switch {
	case opts.FP8Queries != nil:
		return "FP8Queries"
	case opts.QueryScales != nil:
		return "QueryScales"
	}
	return ""
}

// kvPaged is quant.glsl's KV_PAGED for quantized k: 1 where its codes (and, checkPagedScales
// says, its scales) are paged.
func kvPaged(k *Quantized) uint32 {
	if _, pages := k.Codes.Pages(); pages != nil {
		return 1
	}
	return 0
}

// checkPagedScales checks the paging of quantized k and v, whose codes checkPaged has checked:
// paged codes need paged scales and unpaged codes unpaged ones, K's and V's scales with one block
// table, which covers their tokens (the kernels read scales through it as they read the codes
// through theirs). That the codes and scales are one sequence's it cannot check: pass the pairs
// a paged QuantizedKVCache's View gives.
func checkPagedScales(k, v *Quantized) error {
	_, codes := k.Codes.Pages()
	kt, kp := k.Scales.Pages()
	vt, vp := v.Scales.Pages()
	for _, x := range []struct {
		name  string
		pages []uint32
	}{{"k.Scales", kp}, {"v.Scales", vp}} {
		if (x.pages == nil) != (codes == nil) {
			if codes != nil {
				return fmt.Errorf("attention: k.Codes and v.Codes are paged (a paged KV cache's views) but %s is not: paged codes need their scales paged too, as a paged QuantizedKVCache's View gives them", x.name)
			}
			return fmt.Errorf("attention: %s is paged (a paged KV cache's view) but k.Codes and v.Codes are not: codes and scales must both be a paged QuantizedKVCache's views, or neither paged", x.name)
		}
	}
	if kp == nil {
		return nil
	}
	if kt != vt || !slices.Equal(kp, vp) {
		return fmt.Errorf("attention: k.Scales and v.Scales must be views of the same paged KV cache sequences (one block table)")
	}
	s := k.Scales.Shape
	if tokens := s[len(s)-3]; len(kp)*kt < tokens {
		return fmt.Errorf("attention: k.Scales and v.Scales: their block table holds %d tokens, fewer than their %d", len(kp)*kt, tokens)
	}
	return nil
}

// scalePages appends, where s (a quantized call's K scales, whose block table V's share) is
// paged, its block table to the sequence table words of a dispatch over m sequences, and gives
// its place and tokens per page at the kernel's words seqScalePages and after (quant.glsl's
// SEQ_SCALEPAGES); otherwise it returns words.
func scalePages(s *memory.Tensor, words []uint32, m int) []uint32 {
	pt, pages := s.Pages()
	if pages == nil {
		return words
	}
	at := kernelWord(m, seqScalePages)
	words[at], words[at+1] = uint32(len(words)), uint32(pt)
	return append(words, pages...)
}

// scaleWords are the sequence-table words that locate a tensor of scales [.., heads, groups]:
// its offset, token stride and head stride, in elements (quant.glsl's ScaleLayout).
func scaleWords(s *memory.Tensor) []uint32 {
	n := len(s.Strides)
	return []uint32{uint32(s.Offset), uint32(s.Strides[n-3]), uint32(s.Strides[n-2])}
}

// checkQueryScales checks QuantizedDecodeOptions.QueryScales: a live contiguous f32 tensor
// [Hk, D] of e, apart from the outputs.
func (e *Engine) checkQueryScales(qs *memory.Tensor, sh shape, o, lse *memory.Tensor) error {
	const name = "QuantizedDecodeOptions.QueryScales"
	if err := e.owned(name, qs); err != nil {
		return err
	}
	if want := []int{sh.hk, sh.d}; qs.DType != memory.F32 || !slices.Equal(qs.Shape, want) || !qs.Contiguous() {
		return fmt.Errorf("attention: %s must be a contiguous f32 tensor of shape %v (KV heads, head dim), got %s %v", name, want, qs.DType, qs.Shape)
	}
	for _, w := range []arg{{"o", o}, {"lse", lse}} {
		if w.t != nil && overlap(w.t, qs) {
			return fmt.Errorf("attention: %s overlaps %s", w.name, name)
		}
	}
	return nil
}
