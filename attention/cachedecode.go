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
	switch {
	case cache == nil:
		return nil, fmt.Errorf("attention: cache is nil")
	case opts.CuSeqlensK != nil:
		return nil, fmt.Errorf("attention: DecodeCache takes the keys' lengths from the cache: Options.CuSeqlensK must be nil")
	case opts.CuSeqlensQ != nil && len(opts.CuSeqlensQ) != len(seqs)+1:
		return nil, fmt.Errorf("attention: CuSeqlensQ has %d entries for %d sequences, want %d", len(opts.CuSeqlensQ), len(seqs), len(seqs)+1)
	}
	groups, err := cache.Batch(seqs)
	if err != nil {
		return nil, fmt.Errorf("attention: cache: %w", err)
	}
	if opts.CuSeqlensQ == nil {
		if q, o, lse, err = packDense(q, o, lse, len(seqs)); err != nil {
			return nil, err
		}
		opts.CuSeqlensQ = uniform(len(seqs), q.Shape[0]/len(seqs))
	}
	// The checks see the group reaching furthest as k and v, holding every sequence's keys
	// between its first and its last token: windows at least as long as any sequence are
	// unbounded for all of them.
	stand, lens := 0, make([]int, len(seqs))
	for i, g := range groups {
		if g.K.Shape[0] > groups[stand].K.Shape[0] {
			stand = i
		}
		for j, b := range g.Index {
			lens[b] = g.Lens[j]
		}
	}
	k, v := groups[stand].K, groups[stand].V
	checked := opts.Options
	checked.CuSeqlensK = make([]int, len(seqs)+1)
	for i := range seqs {
		checked.CuSeqlensK[i+1] = k.Shape[0]
	}
	c, err := e.newCall(o, lse, q, k, v, checked)
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
	c.sh.cuK = make([]int, len(seqs)+1)
	for i, n := range lens {
		c.sh.cuK[i+1] = c.sh.cuK[i] + n
	}
	c.sh.totalK = c.sh.cuK[len(seqs)]
	c.opts.CuSeqlensK = c.sh.cuK
	c.groups = groups
	return e.planDecodeCall(c, opts.Splits, decodeKernel{op: shaders.OpDecode, dt: q.DType})
}

// packDense views dense q and o [b, Lq, Hq, D] (and lse [b, Lq, Hq]) as packed [b*Lq, ...]
// tensors; b must be the number of sequences.
func packDense(q, o, lse *memory.Tensor, b int) (pq, po, plse *memory.Tensor, err error) {
	for _, a := range []arg{{"q", q}, {"o", o}} {
		switch {
		case a.t == nil:
			return nil, nil, nil, fmt.Errorf("attention: %s is nil", a.name)
		case len(a.t.Shape) != 4:
			return nil, nil, nil, fmt.Errorf("attention: %s has shape %v, want [sequences, seq, heads, head_dim] (or Options.CuSeqlensQ with [tokens, heads, head_dim])", a.name, a.t.Shape)
		case a.t.Shape[0] != b:
			return nil, nil, nil, fmt.Errorf("attention: %s has batch %d for %d cache sequences", a.name, a.t.Shape[0], b)
		}
		if err := checkBatchStride(a); err != nil {
			return nil, nil, nil, err
		}
	}
	pack := func(name string, t *memory.Tensor) (*memory.Tensor, error) {
		sh, st := t.Shape, t.Strides
		p, err := t.View(append([]int{sh[0] * sh[1]}, sh[2:]...), st[1:], t.Offset)
		if err != nil {
			return nil, fmt.Errorf("attention: %s: %w", name, err)
		}
		return p, nil
	}
	if pq, err = pack("q", q); err == nil {
		po, err = pack("o", o)
	}
	if err == nil && lse != nil {
		if len(lse.Shape) != 3 || !lse.Contiguous() {
			return nil, nil, nil, fmt.Errorf("attention: lse must be a contiguous f32 tensor of shape %v, got %s %v", o.Shape[:3], lse.DType, lse.Shape)
		}
		plse, err = lse.Reshape(lse.Shape[0]*lse.Shape[1], lse.Shape[2])
	}
	return pq, po, plse, err
}

// dispatches plans the dispatches of pipe over a call's sequences: push and grid are the
// kernel's (grid's z counts sequences), extra the kernel's words after the sequence table's
// lengths, bindings those after bindings 0-5. A call over KV cache sequences (groups) is one
// dispatch per group, side by side, each with an explicit table of its sequences
// (FLAG_SEQ_TABLE, groupTable) and waiting for the binds of their pages; any other call one.
func (e *Engine) dispatches(c *call, pipe *vk.Pipeline, push []byte, grid [3]uint32, extra []uint32, bindings ...vk.BufferRange) ([]step, error) {
	if c.groups == nil {
		push, words := paged(c.k, push, c.seqWords(extra...))
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
		pushes[i], tables[i] = paged(g.K, push, c.groupTable(g, extra))
	}
	buf, offs, err := e.seqTables(tables)
	if err != nil {
		return nil, err
	}
	steps := make([]step, 0, len(c.groups))
	for i, g := range c.groups {
		seq := vk.BufferRange{Buffer: buf.Buffer, Offset: offs[i], Size: uint64(4 * len(tables[i]))}
		set, err := c.bindKV(pipe, g.K.Buffer(), g.V.Buffer(), seq, append(memory.BindPoints(c.q, c.o), g.After...), bindings...)
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
