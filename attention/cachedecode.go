package attention

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/shaders"
	"github.com/vkattn/vkattn/vk"
)

// flagSeqTable is params.glsl's FLAG_SEQ_TABLE: sequences from an explicit table.
const flagSeqTable = 8

// DecodeCache is DecodeInto over sequences of a KV cache, in one submission: q's sequence i
// (q dense [len(seqs), Lq, Hq, D], or packed [tokens, Hq, D] with Options.CuSeqlensQ of
// len(seqs)+1 entries) attends to the keys and values that the cache's sequence seqs[i] holds
// when called (distinct sequences, none empty; Options.CuSeqlensK must be nil). It takes Decode's
// options, masks and errors, and splits and merges as Decode does over all of them: with the same
// DecodeOptions.Splits its results equal, bit for bit, those of DecodeInto on dense varlen copies
// of the keys, and with Splits 1 those of DecodeInto on each sequence's views.
//
// The sequences of one of the cache's buffers are one decode dispatch, each reading its own
// region (KVCache.Batch); those of several buffers are dispatches side by side, merged by one
// dispatch. As with views, the sequences must not be appended to or released while it runs.
func (e *Engine) DecodeCache(ctx context.Context, o, lse, q *memory.Tensor, cache *memory.KVCache, seqs []int, opts DecodeOptions) (string, error) {
	return e.runBuilt(ctx, func() (*plan, error) { return e.planDecodeCache(o, lse, q, cache, seqs, opts) })
}

func (e *Engine) planDecodeCache(o, lse, q *memory.Tensor, cache *memory.KVCache, seqs []int, opts DecodeOptions) (*plan, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	if cache == nil {
		return nil, fmt.Errorf("attention: cache is nil")
	}
	if err := checkCacheOptions("DecodeCache", opts.Options, len(seqs)); err != nil {
		return nil, err
	}
	groups, err := cache.Batch(seqs)
	if err != nil {
		return nil, fmt.Errorf("attention: cache: %w", err)
	}
	if opts.CuSeqlensQ == nil {
		var ts []*memory.Tensor
		if ts, lse, err = packDense(len(seqs), lse, arg{"q", q}, arg{"o", o}); err != nil {
			return nil, err
		}
		q, o = ts[0], ts[1]
		opts.CuSeqlensQ = uniform(len(seqs), q.Shape[0]/len(seqs))
	}
	// The checks see the group reaching furthest as k and v, holding every sequence's keys
	// between its first and its last token: windows at least as long as any sequence are
	// unbounded for all of them.
	stand := 0
	for i, g := range groups {
		if g.K.Shape[0] > groups[stand].K.Shape[0] {
			stand = i
		}
	}
	k, v := groups[stand].K, groups[stand].V
	c, err := e.newCall(o, lse, q, k, v, cacheChecked(opts.Options, len(seqs), k.Shape[0]))
	if err != nil {
		return nil, err
	}
	var inputs []arg
	for _, g := range groups {
		inputs = append(inputs, arg{"cache k", g.K}, arg{"cache v", g.V})
	}
	if err := checkOutputs(o, lse, inputs); err != nil {
		return nil, err
	}
	c.useGroups(groups, groupLens(groups, len(seqs)))
	return e.planDecodeCall(c, opts.Splits, decodeKernel{op: shaders.OpDecode, dt: q.DType})
}

// checkCacheOptions checks the options of op, a decode over n KV cache sequences.
func checkCacheOptions(op string, opts Options, n int) error {
	switch {
	case opts.CuSeqlensK != nil:
		return fmt.Errorf("attention: %s takes the keys' lengths from the cache: Options.CuSeqlensK must be nil", op)
	case opts.CuSeqlensQ != nil && len(opts.CuSeqlensQ) != n+1:
		return fmt.Errorf("attention: CuSeqlensQ has %d entries for %d sequences, want %d", len(opts.CuSeqlensQ), n, n+1)
	}
	return nil
}

// cacheChecked is the options with which a decode over n KV cache sequences is checked, a
// stand-in of tokens tokens as k and v: every sequence's keys are all of them.
func cacheChecked(opts Options, n, tokens int) Options {
	opts.CuSeqlensK = make([]int, n+1)
	for i := range n {
		opts.CuSeqlensK[i+1] = tokens
	}
	return opts
}

// groupLens are the lengths of the n sequences of groups, in the order of the batch.
func groupLens(groups []memory.KVGroup, n int) []int {
	lens := make([]int, n)
	for _, g := range groups {
		for j, b := range g.Index {
			lens[b] = g.Lens[j]
		}
	}
	return lens
}

// useGroups makes c, checked with a stand-in for the keys (cacheChecked), a call over KV cache
// groups whose sequences hold lens keys: one dispatch each (dispatches).
func (c *call) useGroups(groups []memory.KVGroup, lens []int) {
	c.sh.cuK = make([]int, len(lens)+1)
	for i, n := range lens {
		c.sh.cuK[i+1] = c.sh.cuK[i] + n
	}
	c.sh.totalK = c.sh.cuK[len(lens)]
	c.opts.CuSeqlensK = c.sh.cuK
	c.groups = groups
}

// packDense views dense tensors ts [b, Lq, ...] (the queries and o, last) as packed [b*Lq, ...]
// ones, and lse [b, Lq, Hq] as [b*Lq, Hq]; b must be the number of sequences.
func packDense(b int, lse *memory.Tensor, ts ...arg) ([]*memory.Tensor, *memory.Tensor, error) {
	for _, a := range ts {
		switch {
		case a.t == nil:
			return nil, nil, fmt.Errorf("attention: %s is nil", a.name)
		case len(a.t.Shape) != 4:
			return nil, nil, fmt.Errorf("attention: %s has shape %v, want [sequences, seq, heads, head_dim] (or Options.CuSeqlensQ with [tokens, heads, head_dim])", a.name, a.t.Shape)
		case a.t.Shape[0] != b:
			return nil, nil, fmt.Errorf("attention: %s has batch %d for %d cache sequences", a.name, a.t.Shape[0], b)
		}
		if err := checkBatchStride(a); err != nil {
			return nil, nil, err
		}
	}
	out := make([]*memory.Tensor, len(ts))
	for i, a := range ts {
		sh, st := a.t.Shape, a.t.Strides
		p, err := a.t.View(append([]int{sh[0] * sh[1]}, sh[2:]...), st[1:], a.t.Offset)
		if err != nil {
			return nil, nil, fmt.Errorf("attention: %s: %w", a.name, err)
		}
		out[i] = p
	}
	if lse == nil {
		return out, nil, nil
	}
	if len(lse.Shape) != 3 || !lse.Contiguous() {
		return nil, nil, fmt.Errorf("attention: lse must be a contiguous f32 tensor of shape %v, got %s %v", ts[len(ts)-1].t.Shape[:3], lse.DType, lse.Shape)
	}
	plse, err := lse.Reshape(lse.Shape[0]*lse.Shape[1], lse.Shape[2])
	return out, plse, err
}

// dispatches plans the dispatches of pipe over a call's sequences: push and grid are the
// kernel's (grid's z counts sequences), extra the kernel's words after the sequence table's
// lengths, bindings those after bindings 0-5. A call over KV cache sequences (groups) is one
// dispatch per group, side by side, each with an explicit table of its sequences
// (FLAG_SEQ_TABLE, groupTable) and waiting for the binds of their pages (over a
// QuantizedKVCache's, with its own scales too: scaleGroups); any other call one. Where K and V
// are paged, the tables carry their block tables (paged), and a quantized call's scales' too
// (scalePages).
func (e *Engine) dispatches(c *call, pipe *vk.Pipeline, push []byte, grid [3]uint32, extra []uint32, bindings ...vk.BufferRange) ([]step, error) {
	if c.groups == nil {
		push, words := paged(c.k, push, c.seqWords(extra...))
		words = scalePages(c.scales, words, c.sh.batch)
		seq, err := e.seqLens(words)
		if err != nil {
			return nil, err
		}
		set, err := c.bind(pipe, seq, bindings...)
		if err != nil {
			return nil, err
		}
		return []step{{set: set, push: push, grid: grid}}, nil
	}
	tables := make([][]uint32, len(c.groups))
	pushes := make([][]byte, len(c.groups))
	for i, g := range c.groups {
		words := c.groupTable(g, extra)
		if c.scaleGroups != nil {
			words = c.scaleGroups[i].table(words, len(g.Index))
		}
		pushes[i], tables[i] = paged(g.K, push, words)
	}
	buf, offs, err := e.seqTables(tables)
	if err != nil {
		return nil, err
	}
	steps := make([]step, 0, len(c.groups))
	for i, g := range c.groups {
		seq := vk.BufferRange{Buffer: buf.Buffer, Offset: offs[i], Size: uint64(4 * len(tables[i]))}
		bs := bindings
		if c.scaleGroups != nil {
			bs = c.scaleGroups[i].bind(bindings)
		}
		set, err := c.bindKV(pipe, g.K.Buffer(), g.V.Buffer(), seq, append(memory.BindPoints(c.q, c.o), g.After...), bs...)
		if err != nil {
			for _, s := range steps {
				s.set.Close()
			}
			return nil, err
		}
		gr := grid
		gr[2] = uint32(len(g.Index))
		flags := binary.LittleEndian.Uint32(pushes[i][4*pushFlags:]) | flagSeqTable
		steps = append(steps, step{set: set, push: withPush(pushes[i], pushNSeq, uint32(len(g.Index)), pushFlags, flags), grid: gr, join: i > 0})
	}
	return steps, nil
}

// groupTable is the sequence table of a dispatch over group g with FLAG_SEQ_TABLE (params.glsl):
// for its m sequences, the call's query tokens in all at word m, the start E of the explicit
// entries at word m+1, extra from word 2(m+1), then from E each sequence's qStart, lq, kStart
// and lk.
func (c *call) groupTable(g memory.KVGroup, extra []uint32) []uint32 {
	m := len(g.Index)
	start := 2*(m+1) + len(extra)
	w := make([]uint32, start, start+4*m)
	w[m], w[m+1] = uint32(c.sh.totalQ), uint32(start)
	copy(w[2*(m+1):], extra)
	for i, b := range g.Index {
		w = append(w, uint32(c.sh.cuQ[b]), uint32(c.sh.cuQ[b+1]-c.sh.cuQ[b]), uint32(g.Starts[i]), uint32(g.Lens[i]))
	}
	return w
}
