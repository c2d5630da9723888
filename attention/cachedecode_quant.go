package attention

import (
	"context"
	"fmt"
	"slices"

	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/vk"
)

// DecodeQuantizedCache is DecodeQuantizedInto over sequences of a QuantizedKVCache, in one
// submission of the decode, as DecodeCache is DecodeInto over a memory.KVCache's: the queries'
// sequence i (q dense [len(seqs), Lq, Hq, D], or packed [tokens, Hq, D] with Options.CuSeqlensQ
// of len(seqs)+1 entries; or opts.FP8Queries shaped so, q nil) attends to the keys and values
// that the cache's sequence seqs[i] holds when called (distinct sequences, none empty;
// Options.CuSeqlensK must be nil). It takes DecodeQuantized's options (QueryScales for a cache
// made with key scales), masks and errors, and splits and merges as Decode does over all the
// sequences: with the same DecodeOptions.Splits its results equal, bit for bit, those of
// DecodeQuantizedInto over packed varlen copies of the sequences' codes and scales, and with
// Splits 1 (at the subgroup tier, with any given Splits) those of DecodeQuantizedInto over each
// sequence's View.
//
// It reads the caches in place. In the sparse layout it waits for the binds of the codes' and
// the scales' pages: the sequences whose codes lie in one buffer of the codes' cache and whose
// scales lie in one of the scales' are one decode dispatch (usually all of them), each sequence
// finding its scales at their own tokens; dispatches of several such pairs of buffers run side
// by side, merged by one dispatch. In the paged layout all of them are one dispatch, which finds
// their codes through the codes' block tables and their scales through the scales' (each cache
// has its own pages), nothing copied. As with views, the sequences must not be appended to or
// released while it runs.
func (e *Engine) DecodeQuantizedCache(ctx context.Context, o, lse, q *memory.Tensor, cache *QuantizedKVCache, seqs []int, opts QuantizedDecodeOptions) (string, error) {
	if err := e.usable(); err != nil {
		return "", err
	}
	if cache == nil {
		return "", fmt.Errorf("attention: cache is nil")
	}
	if cache.e != e {
		return "", fmt.Errorf("attention: cache: %w", memory.ErrForeign)
	}
	if err := checkCacheOptions("DecodeQuantizedCache", opts.Options, len(seqs)); err != nil {
		return "", err
	}
	b, err := cache.batch(seqs)
	if err != nil {
		return "", err
	}
	return e.runBuilt(ctx, func() (*plan, error) { return e.planDecodeQuantizedCache(o, lse, q, cache, b, opts) })
}

func (e *Engine) planDecodeQuantizedCache(o, lse, q *memory.Tensor, cache *QuantizedKVCache, b *quantBatch, opts QuantizedDecodeOptions) (*plan, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	n := len(b.lens)
	if opts.CuSeqlensQ == nil {
		var err error
		if q, o, lse, opts.FP8Queries, err = packDenseQueries(n, q, o, lse, opts.FP8Queries); err != nil {
			return nil, err
		}
		opts.CuSeqlensQ = uniform(n, o.Shape[0]/n)
	}
	// The checks see views of the longest sequence's tokens from the buffers' start as k and v
	// (windows at least as long as every sequence are then unbounded for all of them). Paged
	// tensors take no views: there the checks see the group's own, which hold the tokens of
	// every sequence's pages, as DecodeCache's do (the two caches' pages hold as many tokens, so
	// the codes' and the scales' agree).
	f, tokens := cache.f, slices.Max(b.lens)
	at := b.longest
	parts := [4]*memory.Tensor{b.groups[at].K, b.scales[at].k, b.groups[at].V, b.scales[at].v}
	if _, pages := parts[0].Pages(); pages != nil {
		tokens = parts[0].Shape[0]
	} else {
		for i, t := range parts {
			s, err := t.View([]int{tokens, t.Shape[1], t.Shape[2]}, t.Strides, 0)
			if err != nil {
				return nil, fmt.Errorf("attention: cache %s: %w", []string{"k.Codes", "k.Scales", "v.Codes", "v.Scales"}[i], err)
			}
			parts[i] = s
		}
	}
	k, v := &Quantized{Format: f, Codes: parts[0], Scales: parts[1]}, &Quantized{Format: f, Codes: parts[2], Scales: parts[3]}
	checked := opts
	checked.Options = cacheChecked(opts.Options, n, tokens)
	c, kern, err := e.newQuantizedCall(o, lse, q, k, v, checked)
	if err != nil {
		return nil, err
	}
	var inputs []arg
	for i, g := range b.groups {
		inputs = append(inputs, arg{"cache k.Codes", g.K}, arg{"cache v.Codes", g.V},
			arg{"cache k.Scales", b.scales[i].k}, arg{"cache v.Scales", b.scales[i].v})
	}
	if err := checkOutputs(c.o, lse, inputs); err != nil {
		return nil, err
	}
	c.useGroups(b.groups, b.lens)
	c.scaleGroups = b.scales
	return e.planDecodeCall(c, opts.Splits, kern)
}

// packDenseQueries is packDense for a quantized decode's queries: q, or the codes and scales of
// FP8 queries (q nil), and o.
func packDenseQueries(n int, q, o, lse *memory.Tensor, fp8 *Quantized) (_, _, _ *memory.Tensor, _ *Quantized, err error) {
	args := []arg{{"q", q}, {"o", o}}
	if fp8 != nil && q == nil {
		if fp8.Codes == nil || fp8.Scales == nil {
			return nil, nil, nil, nil, fmt.Errorf("attention: FP8Queries: codes or scales are nil")
		}
		args = []arg{{"FP8Queries.Codes", fp8.Codes}, {"FP8Queries.Scales", fp8.Scales}, {"o", o}}
	}
	ts, lse, err := packDense(n, lse, args...)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if len(ts) == 3 {
		return nil, ts[2], lse, &Quantized{Format: fp8.Format, Codes: ts[0], Scales: ts[1]}, nil
	}
	return ts[0], ts[1], lse, fp8, nil
}

// quantBatch is where the sequences of a DecodeQuantizedCache call lie, in the order given: the
// codes' groups (memory.KVCache.Batch) split by the scales' buffers, with the scales of each
// (pairGroups; in the paged layout one group of each, with their block tables).
type quantBatch struct {
	groups  []memory.KVGroup
	scales  []scaleGroup
	longest int // the group holding the longest sequence
	lens    []int
}

// batch describes sequences seqs of the cache for a decode over them, their appends held off
// meanwhile, so that the codes and the scales agree.
func (c *QuantizedKVCache) batch(seqs []int) (*quantBatch, error) {
	if len(seqs) == 0 {
		return nil, fmt.Errorf("attention: quantized kv cache: batch of no sequences")
	}
	for i, seq := range seqs {
		if err := c.check(seq); err != nil {
			return nil, err
		}
		if slices.Contains(seqs[:i], seq) {
			return nil, fmt.Errorf("attention: quantized kv cache: sequence %d is twice in the batch", seq)
		}
	}
	defer c.lockSeqs(seqs)()
	b := &quantBatch{lens: make([]int, len(seqs))}
	codes, err := c.codes.Batch(seqs)
	if err != nil {
		return nil, fmt.Errorf("attention: quantized kv cache: codes: %w", err)
	}
	scales, err := c.scales.Batch(seqs)
	if err != nil {
		return nil, fmt.Errorf("attention: quantized kv cache: scales: %w", err)
	}
	if b.groups, b.scales, err = pairGroups(codes, scales, seqs); err != nil {
		return nil, err
	}
	longest := 0
	for i, g := range b.groups {
		for j, x := range g.Index {
			b.lens[x] = g.Lens[j]
			if g.Lens[j] > longest {
				longest, b.longest = g.Lens[j], i
			}
		}
	}
	return b, nil
}

// scaleGroup is where the scales of a dispatch's sequences lie (DecodeQuantizedCache): K's and
// V's in views [tokens, Heads, Groups] of the scales' cache's buffers from their start, sequence
// i of the group from token starts[i] (its codes' first token is elsewhere, in another cache);
// in the paged layout, tokens of the views' block table (memory.Tensor.Pages), the scales' own.
type scaleGroup struct {
	k, v   *memory.Tensor
	starts []int
}

// pairGroups splits the groups of the codes' cache over a batch of sequences seqs by the groups
// of the scales' cache holding the same sequences (their buffers), so that each dispatch binds
// one buffer of each: it returns the codes' groups so split (their views, their sequences' places
// in the batch, starts and lengths, and the binds of the codes' and the scales' pages to wait
// for) and, for each, the scales' views and starts of the same sequences.
func pairGroups(codes, scales []memory.KVGroup, seqs []int) ([]memory.KVGroup, []scaleGroup, error) {
	type at struct{ group, i int } // a sequence's group and place in it
	scaleOf := make([]at, len(seqs))
	for g, sg := range scales {
		for i, x := range sg.Index {
			scaleOf[x] = at{g, i}
		}
	}
	var out []memory.KVGroup
	var sout []scaleGroup
	for _, cg := range codes {
		pair := map[int]int{} // this codes group's pairs, by scales group
		for i, x := range cg.Index {
			s := scaleOf[x]
			sg := scales[s.group]
			if n, m := cg.Lens[i], sg.Lens[s.i]; n != m {
				return nil, nil, fmt.Errorf("attention: quantized kv cache: sequence %d holds %d tokens of codes and %d of scales", seqs[x], n, m)
			}
			p, ok := pair[s.group]
			if !ok {
				p = len(out)
				pair[s.group] = p
				out = append(out, memory.KVGroup{K: cg.K, V: cg.V, After: slices.Concat(cg.After, sg.After)})
				sout = append(sout, scaleGroup{k: sg.K, v: sg.V})
			}
			g := &out[p]
			g.Index, g.Starts, g.Lens = append(g.Index, x), append(g.Starts, cg.Starts[i]), append(g.Lens, cg.Lens[i])
			sout[p].starts = append(sout[p].starts, sg.Starts[s.i])
		}
	}
	return out, sout, nil
}

// Bindings of the quantized decode kernels (quant.glsl) that a scaleGroup sets, and the first
// binding that dispatches' bindings list.
const (
	bindKScales, bindVScales = 8, 9
	firstExtraBinding        = 6
)

// table appends the sequences' first tokens of the scales to the sequence table words of a
// dispatch over the group's m sequences (groupTable, whose kernel words are the chunk size and
// decodeKernel.seq), and gives their place at seqScaleStarts, so that the kernel finds each
// sequence's scales there (quant.glsl's kvScaleLayout); in the paged layout the scales' block
// table too (scalePages).
func (s scaleGroup) table(words []uint32, m int) []uint32 {
	words[kernelWord(m, seqScaleStarts)] = uint32(len(words))
	for _, x := range s.starts {
		words = append(words, uint32(x))
	}
	return scalePages(s.k, words, m)
}

// bind returns the bindings after bindings 0-5 of a dispatch over the group: bindings, with K's
// and V's scales the group's.
func (s scaleGroup) bind(bindings []vk.BufferRange) []vk.BufferRange {
	out := slices.Clone(bindings)
	out[bindKScales-firstExtraBinding] = vk.BufferRange{Buffer: s.k.Buffer().Buffer}
	out[bindVScales-firstExtraBinding] = vk.BufferRange{Buffer: s.v.Buffer().Buffer}
	return out
}
