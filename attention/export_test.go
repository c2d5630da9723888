package attention

import (
	"context"

	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/vk"
)

// DecodeOps are the decode operations of the quantized formats, for the tests.
var DecodeOps = decodeOps

// QuantizedKVCacheParts exposes a QuantizedKVCache's two caches to the tests, which spend one's
// pages to make the second half of an append fail.
func QuantizedKVCacheParts(c *QuantizedKVCache) (codes, scales *memory.KVCache) {
	return c.codes, c.scales
}

// GatherQuantized copies x, whose codes and scales are paged views [1, n, H, W] of a
// QuantizedKVCache (memory.Tensor.Pages), into new contiguous tensors of their allocator, in one
// submission: what the tests read back (transfers refuse paged tensors) and decode as dense K or
// V.
func GatherQuantized(ctx context.Context, x *Quantized) (*Quantized, error) {
	views := []*memory.Tensor{x.Codes, x.Scales}
	alloc := x.Codes.Allocator()
	var out []*memory.Tensor
	fail := func(err error) (*Quantized, error) {
		for _, t := range out {
			t.Close()
		}
		return nil, err
	}
	for _, t := range views {
		if t.Closed() {
			return fail(memory.ErrClosed)
		}
		g, err := alloc.NewTensor(t.DType, t.Shape...)
		if err != nil {
			return fail(err)
		}
		out = append(out, g)
	}
	err := alloc.Device().Run(ctx, func(cmd *vk.Commands) error {
		for i, t := range views {
			pt, pages := t.Pages()
			n := t.Shape[1]
			row := uint64(t.Shape[2]*t.Shape[3]) * uint64(t.DType.Size()) // one token's bytes
			base := uint64(out[i].Offset) * uint64(t.DType.Size())
			for tok := 0; tok < n; {
				m := min(pt-tok%pt, n-tok)
				src := (uint64(pages[tok/pt])*uint64(pt) + uint64(tok%pt)) * row
				cmd.Copy(t.Buffer().Buffer, src, out[i].Buffer().Buffer, base+uint64(tok)*row, uint64(m)*row)
				tok += m
			}
		}
		cmd.Barrier()
		return nil
	})
	if err != nil {
		return fail(err)
	}
	return &Quantized{Format: x.Format, Codes: out[0], Scales: out[1]}, nil
}
