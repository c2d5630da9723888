package attention

import (
	"fmt"

	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/quant"
	"github.com/vkattn/vkattn/shaders"
)

// The tensor-core decode kernels of quantized K and V (decode_imma.glsl, immaKernel) multiply
// INT8 or INT4 K and V's codes as int8 matrices: queries and probabilities enter them as two int8
// terms each, about 15 bits, so that quantized decode is bound by its bytes rather than by its
// per-key instructions. They take one subgroup of 16 rows (new tokens times query heads per kv
// head) over tiles of 32 keys, queries of any type and mode (they quantize what the other kernels
// multiply: FP8 and scaled queries too), and K and V dense, with offsets and strides of whole
// 16-byte units (the INT8 kernel's matrix loads read their rows straight from the buffers; the
// INT4 kernel, whose codes are staged as int8 in shared memory, is held to the same), at head
// dims that are multiples of 32 up to 128; INT4 K and V of one scale group a row only (its
// kernel takes group 0's scale for a key), which quant's Int4 is at those dims.
//
// They are kernels of the coopmat tier (shaders.Variant.Alternate), not a tier of their own: a
// tier is a family of kernels for every operation, by the features they need, and these take
// some quantized decode calls only; as a tier it would have no forward or float decode kernel,
// and every list of a device's tiers would show it with holes. The automatic choice takes one
// before any tier where it fits the call (selectDecode); forcing the coopmat tier (Options.Tier,
// $VKATTN_TIER) takes it where it fits, else the tier's fp16 kernel. Both only where
// DecodeIMMAEnv turns them on: they have not yet run on a GPU, so they are off by default.
//
// immaKernel names the tensor-core kernel of quantized decode operation op and the format of K
// and V it reads (decodeOps); ok is false for other operations.
func immaKernel(op shaders.Op) (name string, f quant.Format, ok bool) {
	for f, o := range decodeOps {
		if o == op {
			return "decode_" + f.String() + "_imma", f, true
		}
	}
	return "", 0, false
}

// The kernel's fixed sizes (decode_imma.glsl's IR, IK and ISG) and what it needs of K and V.
const (
	immaRows  = 16 // rows of a block: its one subgroup's matrix rows
	immaKeys  = 32 // keys of a tile
	immaWidth = 32 // lanes of its subgroup, which is the workgroup
	immaDims  = 32 // head dims are multiples of it (a Q.K^T step)
	// immaMaxDim bounds the head dim: a lane holds D/16 query, D/16 K and D/16 V matrices of 4
	// registers and D/16 O blocks of 8, 160 registers at 128 (about 200 with INT8's next tile's
	// K in flight; INT4 holds the next tile's D/4 code words instead); more would spill.
	immaMaxDim = 128
	immaAlign  = 4 // words: K's and V's offsets and strides are whole 16-byte units
)

// DecodeIMMAEnv, set to 1, lets the tensor-core kernels of INT8 and INT4 K and V
// (decode_int8_imma, decode_int4_imma) take the quantized decode calls they fit, automatically
// and at a forced coopmat tier; unset or 0, they take none (the default until they have been
// tested and timed on a GPU). Read by every decode call; a malformed value fails the call.
const DecodeIMMAEnv = "VKATTN_DECODE_IMMA"

// immaTiles returns the tensor-core kernel of decode operation op (OpDecodeInt8 or OpDecodeInt4)
// and its tiles for head dim d and rows rows per (sequence, kv head) on device p, or why it does
// not run them.
func immaTiles(p *devices.Profile, op shaders.Op, d, rows int) (*shaders.Variant, tiles, error) {
	name, f, ok := immaKernel(op)
	if !ok {
		return nil, tiles{}, fmt.Errorf("attention: no tensor-core decode kernel of %s", op)
	}
	v, err := shaders.Lookup(name)
	if err != nil {
		return nil, tiles{}, err
	}
	if err := v.RunsOn(p); err != nil {
		return nil, tiles{}, fmt.Errorf("attention: %w", err)
	}
	t := tiles{BR: immaRows, BC: immaKeys, WG: immaWidth, SG: immaWidth, PinSubgroup: p.MinSubgroupSize != p.MaxSubgroupSize}
	pinnable := p.Features.SubgroupSizeControl && p.MinSubgroupSize <= immaWidth && immaWidth <= p.MaxSubgroupSize
	switch {
	case rows > immaRows:
		return nil, tiles{}, fmt.Errorf("attention: %s takes at most %d rows per (sequence, kv head), not %d", name, immaRows, rows)
	case f.Groups(d) != 1:
		return nil, tiles{}, fmt.Errorf("attention: %s takes %s K and V of one scale group per row; at head dim %d they have %d groups of %d channels",
			name, f, d, f.Groups(d), f.GroupSize(d))
	case d%immaDims != 0 || d > immaMaxDim:
		return nil, tiles{}, fmt.Errorf("attention: %s takes head dims that are multiples of %d up to %d, not %d", name, immaDims, immaMaxDim, d)
	case p.SubgroupSize != immaWidth && !pinnable:
		return nil, tiles{}, fmt.Errorf("attention: %s needs subgroups of %d lanes; %s has %d", name, immaWidth, p.Name, p.SubgroupSize)
	case min(p.MaxWorkgroupInvocations, p.MaxWorkgroupSize[0]) < immaWidth:
		return nil, tiles{}, fmt.Errorf("attention: %s needs workgroups of %d invocations", name, immaWidth)
	case immaShared(uint32(d)) > p.MaxSharedMemory:
		return nil, tiles{}, fmt.Errorf("attention: head dim %d does not fit %d bytes of shared memory in %s", d, p.MaxSharedMemory, name)
	}
	return v, t, nil
}

// immaShared is the shared memory decode_imma.glsl declares at head dim d, in bytes: a tile's
// codes (K's and V's rows, padded by a 16-byte unit), the scores, probabilities and their codes,
// two factor matrices, an O block and a tile's scales; and decode.comp's (decodeMergeShared).
func immaShared(d uint32) uint32 {
	codes := 2 * immaKeys * (d/16 + 1) * 16
	rows := uint32(immaRows * (immaKeys/4 + 1) * 16) // scores, and probabilities
	pCodes := uint32(2 * immaRows * (immaKeys/16 + 1) * 16)
	return codes + 2*rows + pCodes + 2*immaRows*16*4 + immaRows*5*16 + 2*immaKeys*4 + decodeMergeShared
}

// immaPlaced reports whether K and V placed at at (their codes, in words) suit the kernel's matrix
// loads: every offset and stride a whole number of 16-byte units.
func immaPlaced(at kvPlacement) bool {
	return at.multipleOf(immaAlign)
}

// immaCall reports whether the K and V of call c let a tensor-core kernel take it (immaTiles
// decides by operation and sizes): not paged (a block table's pages are not evenly strided
// rows) and placed for its matrix loads, every group's over KV cache sequences too.
func immaCall(c *call) bool {
	if _, pages := c.k.Pages(); pages != nil || !immaPlaced(placementOf(c.k, c.v)) {
		return false
	}
	for _, g := range c.groups {
		if _, pages := g.K.Pages(); pages != nil || !immaPlaced(placementOf(g.K, g.V)) {
			return false
		}
	}
	return true
}
