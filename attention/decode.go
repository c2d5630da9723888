package attention

import (
	"context"
	"fmt"
	"math/bits"
	"os"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/quant"
	"github.com/vkattn/vkattn/shaders"
	"github.com/vkattn/vkattn/vk"
)

// MaxDecodeQueries is the most new query tokens per sequence that Decode takes (speculative
// verification checks a few drafted tokens at once); Forward takes any number.
const MaxDecodeQueries = 16

// DecodeOptions are Decode's options: Forward's, and how each sequence's keys are split.
type DecodeOptions struct {
	Options
	// Splits, if positive, is the number of chunks each sequence's keys are split into: ranges
	// of ceil(longest/Splits) keys at the scalar tier, interleaved tiles of keys at the subgroup
	// and coopmat tiers, so a shorter sequence's chunks may hold none; 0 chooses it from the
	// device and the lengths (see Decode).
	Splits int
}

// Decode computes attention for a few new query tokens per sequence (1 to MaxDecodeQueries)
// against long keys, the inference step, allocating the output (and logsumexp) tensors. It
// takes what Forward takes, the same way: q [B, Lq, Hq, D] and k, v [B, Lk, Hk, D], or packed
// varlen batches through Options.CuSeqlensQ/K (where a sequence may have no new token), with
// causal masks (bottom-right aligned: new token i of a sequence sees keys j <= i + Lk - Lq, so
// the new tokens see each other causally when they are the keys' last Lq), windows, soft caps
// and grouped heads; the same numerics; the same errors, and one more: a sequence of more than
// MaxDecodeQueries new tokens.
//
// It is split-KV ("flash-decoding"): the keys of each sequence are split into chunks, one
// workgroup per (chunk, KV head) computes a partial output and logsumexp for every query head
// of that KV head and every new token (where they fit: see decodeTiles), so each K/V byte is
// read once, into fp32 scratch memory; a second dispatch merges the partials (the kernel Merge
// runs; with DecodeMergeLastEnv set, the last workgroup of each (KV head, sequence, row block)
// merges instead, in the first). With one chunk the first dispatch writes the result and there
// is no second. Vulkan
// does not report a GPU's compute units, so the automatic number of chunks aims at a number of
// workgroups per device type (twice the CPU threads on a CPU device; a few per compute unit of
// the largest GPUs), chunks of at least 128 keys, at most 128 chunks, and partials that fit the
// device's maxStorageBufferRange; DecodeOptions.Splits overrides it.
func (e *Engine) Decode(ctx context.Context, q, k, v *memory.Tensor, opts DecodeOptions) (*Result, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	if q == nil {
		return nil, fmt.Errorf("attention: q is nil")
	}
	return e.newResult(q.DType, q.Shape, opts.LSE, func(o, lse *memory.Tensor) (string, error) {
		return e.DecodeInto(ctx, o, lse, q, k, v, opts)
	})
}

// DecodeInto is Decode into o (shaped and typed as q) and, if not nil, lse (fp32, q's shape
// without the head dim). It returns the kernels that ran: the decode variant, with "+merge"
// where the keys were split into more than one chunk ("+lastmerge" where the decode kernel
// merged them, DecodeMergeLastEnv).
func (e *Engine) DecodeInto(ctx context.Context, o, lse, q, k, v *memory.Tensor, opts DecodeOptions) (string, error) {
	return e.runBuilt(ctx, func() (*plan, error) { return e.planDecode(o, lse, q, k, v, opts) })
}

// TimeDecode runs the decode (both dispatches) warmup+iters times in one submission and returns
// the device time of each timed run, and the kernels that ran.
func (e *Engine) TimeDecode(ctx context.Context, o, lse, q, k, v *memory.Tensor, opts DecodeOptions, warmup, iters int) ([]time.Duration, string, error) {
	return e.timeBuilt(ctx, func() (*plan, error) { return e.planDecode(o, lse, q, k, v, opts) }, warmup, iters)
}

// DecodeTiers lists, slowest first, the tiers at which Decode runs on the engine's device; each
// can be forced with Options.Tier. See DecodeTiersOn, DecodeTierInputs and
// QuantizedDecodeTiers.
func (e *Engine) DecodeTiers() []devices.Tier { return DecodeTiersOn(&e.profile) }

// DecodeTiersOn lists, slowest first, the tiers at which Decode runs on a device with profile p:
// for every head dim of HeadDims the device runs the tier's decode kernel for some input type
// (its features and tiles fit). The scalar and subgroup kernels take every input type, the
// coopmat kernels fp16 or bf16 (DecodeTierInputsOn).
func DecodeTiersOn(p *devices.Profile) []devices.Tier {
	return decodeTiersOf(p, shaders.OpDecode)
}

// QuantizedDecodeTiers lists, slowest first, the tiers at which DecodeQuantized and
// DecodeQuantizedCache run on the engine's device (both INT8 and INT4 K/V): the scalar,
// subgroup and coopmat tiers, where the device runs them (the coopmat tier for fp16 queries,
// QuantizedDecodeInputs).
func (e *Engine) QuantizedDecodeTiers() []devices.Tier {
	return common(decodeTiersOf(&e.profile, shaders.OpDecodeInt8), decodeTiersOf(&e.profile, shaders.OpDecodeInt4))
}

// common is the elements of a that b holds too, in a's order.
func common[T comparable](a, b []T) []T {
	var out []T
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// DecodeTierInputs lists the storage types of q, k and v that Decode takes at tier t on the
// engine's device: at every head dim of HeadDims; empty where the tier does not run.
func (e *Engine) DecodeTierInputs(t devices.Tier) []memory.DType {
	return DecodeTierInputsOn(&e.profile, t)
}

// DecodeTierInputsOn is DecodeTierInputs on a device with profile p; t is a tier of
// devices.Tiers (for TierAuto it is empty: the automatic choice takes every type somewhere).
func DecodeTierInputsOn(p *devices.Profile, t devices.Tier) []memory.DType {
	var out []memory.DType
	for _, dt := range ForwardDTypes {
		if decodeRuns(p, shaders.OpDecode, t, dt) {
			out = append(out, dt)
		}
	}
	return out
}

// DecodeOpTiersOn lists, slowest first, the tiers at which decode operation op (shaders.OpDecode,
// OpDecodeInt8 or OpDecodeInt4) runs on a device with profile p, for some input type at every
// head dim: the features, matrix shapes and tiles its kernels need (DecodeTiersOn for OpDecode).
func DecodeOpTiersOn(p *devices.Profile, op shaders.Op) []devices.Tier {
	if !IsDecodeOp(op) {
		return nil
	}
	return decodeTiersOf(p, op)
}

// IsDecodeOp reports whether op is a decode operation (float or quantized K/V), whose tiers the
// attention package decides from its kernels' tiles and matrix shapes, not features alone.
func IsDecodeOp(op shaders.Op) bool {
	return op == shaders.OpDecode || op == shaders.OpDecodeInt8 || op == shaders.OpDecodeInt4
}

// AutoDecode returns the tier and kernel that decode operation op (shaders.OpDecode,
// OpDecodeInt8 or OpDecodeInt4) chooses automatically on a device with profile p for queries of
// type dt (float ones, not FP8 or scaled), head dim d and rows rows per (sequence, kv head): new
// tokens times query heads per kv head; K and V dense, in whole 16-byte units (as UploadQuantized,
// Quantize and a sparse QuantizedKVCache give them), which the tensor-core kernels need.
func AutoDecode(p *devices.Profile, op shaders.Op, dt memory.DType, d, rows int) (devices.Tier, string, error) {
	if !IsDecodeOp(op) {
		return devices.TierAuto, "", fmt.Errorf("attention: %s is not a decode operation", op)
	}
	if !slices.Contains(HeadDims, d) {
		return devices.TierAuto, "", fmt.Errorf("attention: head dim %d is not one of %v", d, HeadDims)
	}
	tu, err := decodeTuningEnv()
	if err != nil {
		return devices.TierAuto, "", err
	}
	kern := decodeKernel{op: op, dt: dt}
	v, _, _, err := selectDecode(p, op, devices.TierAuto, decodeOrder(kern, rows, false), dt, d, rows, tu, tu.imma)
	if err != nil {
		return devices.TierAuto, "", err
	}
	return v.Tier, v.Name, nil
}

// decodeTiersOf lists the tiers at which decode operation op runs on the device for some input
// type at every head dim.
func decodeTiersOf(p *devices.Profile, op shaders.Op) []devices.Tier {
	var out []devices.Tier
	for _, t := range devices.Tiers {
		for _, dt := range ForwardDTypes {
			if decodeRuns(p, op, t, dt) {
				out = append(out, t)
				break
			}
		}
	}
	return out
}

// decodeRuns reports whether op runs at tier t for queries of type dt at every head dim.
func decodeRuns(p *devices.Profile, op shaders.Op, t devices.Tier, dt memory.DType) bool {
	for _, d := range HeadDims {
		if _, _, _, err := selectDecode(p, op, t, nil, dt, d, 1, decodeTuning{}, false); err != nil {
			return false
		}
	}
	return true
}

// The decode kernel's flags: write partials (binding 6 and 7) instead of o and lse; read K and V
// in multi-word loads (decode_stream.glsl).
const (
	flagPartial = 2 // decode.comp's FLAG_PARTIAL
	flagVec     = 4 // decode_stream.glsl's FLAG_VEC
)

// decodeKernelSpecs is the most specialization constants a decode kernel takes after
// decode.comp's six (quant.glsl's three); decode.comp's CONTIGUOUS and PREFETCH follow them.
const decodeKernelSpecs = 3

// Bounds of the automatic number of chunks. A chunk of decodeMinChunk keys reads many times
// the bytes its partials write (fp16 K/V at 4 rows a kv head: 32x); at 4k keys on the H100, 32
// chunks of 128 keys ran 1.32x faster than 16 of 256.
const (
	decodeMinChunk  = 128 // keys
	decodeMaxSplits = 128
)

// decodeTargetWorkgroups is the number of decode chunks of wg invocations each (a workgroup's,
// or at the subgroup tier a subgroup's) that the automatic split aims at on a device: twice the
// CPU threads on a CPU device (lavapipe runs a workgroup on one thread whatever its size), on
// GPUs 32768 invocations on an integrated GPU and 65536 on others: about one wave of the
// largest GPUs (on the H100, 2048 subgroups of the subgroup tier's 128-register kernels are
// 16 an SM; 4096, two waves less a few, ran 9% slower at 32k keys and 2% at 128k); a smaller
// GPU runs them in more waves at little cost.
//
// On a CPU device it depends on runtime.NumCPU() of the host, so with DecodeOptions.Splits 0 the
// number of chunks, and with it the order in which partials are summed, can differ between hosts
// with different core counts: results on lavapipe are then not bit-reproducible across them.
// Set Splits to compare results bit for bit across hosts.
func decodeTargetWorkgroups(p *devices.Profile, wg int) int {
	switch p.Type {
	case vk.DeviceCPU:
		return 2 * runtime.NumCPU()
	case vk.DeviceIntegrated:
		return max(1, 32768/wg)
	}
	return max(1, 65536/wg)
}

// decodeSplit chooses the chunks of a decode call: n chunks of chunk keys each. forced > 0 is
// taken as given; otherwise n aims at target workgroups in all, given the others (workgroups
// per chunk), within [1, decodeMaxSplits], chunks of at least decodeMinChunk keys rounded up to
// tiles of bc keys, and at most maxN chunks (the partials' limit).
func decodeSplit(forced, target, workgroups, maxLk, bc, maxN int) (n, chunk int) {
	if forced > 0 {
		return forced, ceilDiv(maxLk, forced)
	}
	n = ceilDiv(target, max(workgroups, 1))
	n = max(1, min(n, maxLk/decodeMinChunk, decodeMaxSplits, maxN))
	chunk = ceilDiv(ceilDiv(maxLk, n), bc) * bc
	return ceilDiv(maxLk, chunk), chunk
}

func (e *Engine) planDecode(o, lse, q, k, v *memory.Tensor, opts DecodeOptions) (*plan, error) {
	c, err := e.newCall(o, lse, q, k, v, opts.Options)
	if err != nil {
		return nil, err
	}
	return e.planDecodeCall(c, opts.Splits, decodeKernel{op: shaders.OpDecode, dt: q.DType})
}

// decodeKernel is what sets a decode call's kernel apart: its operation, the storage type the
// variant must read, and what it takes beyond decode.comp's six specialization constants (at
// most decodeKernelSpecs), its sequence table (the chunk size) and its eight bindings.
type decodeKernel struct {
	op shaders.Op
	dt memory.DType
	// wideQueries, if not empty, names the option that makes the queries FP8 or scaled
	// (FP8Queries, QueryScales): values the coopmat tier's fp16 matrices do not hold exactly, so
	// that tier is refused.
	wideQueries string
	spec        []uint32
	seq         []uint32
	bindings    []vk.BufferRange
}

// planDecodeCall plans a validated decode call (Decode's or DecodeQuantized's): the split, the
// decode dispatch of kernel kern, and the merge of its partials.
func (e *Engine) planDecodeCall(c *call, splits int, kern decodeKernel) (_ *plan, err error) {
	sh, o := c.sh, c.o
	if sh.maxLq > MaxDecodeQueries {
		for b := 0; b < sh.batch; b++ {
			if n := sh.cuQ[b+1] - sh.cuQ[b]; n > MaxDecodeQueries {
				return nil, fmt.Errorf("attention: q: Decode takes 1 to %d query tokens per sequence, got %d in sequence %d (Forward takes any number)",
					MaxDecodeQueries, n, b)
			}
		}
	}
	if splits < 0 {
		return nil, fmt.Errorf("attention: DecodeOptions.Splits must be >= 0, got %d", splits)
	}
	tier, err := envTier(c.opts.Tier)
	if err != nil {
		return nil, err
	}
	tu, err := decodeTuningEnv()
	if err != nil {
		return nil, err
	}
	rows := sh.maxLq * (sh.hq / sh.hk)
	imma := tu.imma && immaCall(c)
	if kern.wideQueries != "" && tier == devices.TierCoopMat {
		if _, _, err := immaTiles(&e.profile, kern.op, sh.d, rows); !imma || err != nil {
			name, _, _ := immaKernel(kern.op)
			return nil, fmt.Errorf("attention: %s: tier %s multiplies the queries as fp16, which FP8 and scaled queries do not fit exactly, and its tensor-core kernel %s does not take this call; the subgroup and scalar tiers take them",
				kern.wideQueries, tier, name)
		}
	}
	_, pages := c.k.Pages()
	variant, t, stream, err := selectDecode(&e.profile, kern.op, tier, decodeOrder(kern, rows, pages != nil), kern.dt, sh.d, rows, tu, imma)
	if err != nil {
		return nil, err
	}
	maxLk := 0
	for b := 0; b < sh.batch; b++ {
		maxLk = max(maxLk, sh.cuK[b+1]-sh.cuK[b])
	}
	// Partials per chunk: an output row of d floats and a logsumexp per query token and head.
	rowFloats := uint64(sh.totalQ) * uint64(sh.hq)
	lim := uint64(e.profile.MaxStorageBufferRange)
	maxN := int(min(lim/(4*rowFloats*uint64(sh.d)), 1<<20))
	rowBlocks := ceilDiv(rows, int(t.BR))
	// A chunk takes a workgroup, or at the subgroup tier a subgroup, WG / SG of them a workgroup.
	perChunk := t.WG
	if variant.Tier == devices.TierSubgroup {
		perChunk = t.SG
	}
	n, chunk := decodeSplit(splits, decodeTargetWorkgroups(&e.profile, int(perChunk)), sh.hk*rowBlocks*sh.batch, maxLk, int(t.BC), maxN)
	if n > 1 && n > maxN {
		return nil, fmt.Errorf("attention: DecodeOptions.Splits %d: the partial outputs, %d x %d x %d fp32, exceed the device's maxStorageBufferRange of %d bytes",
			n, n, rowFloats, sh.d, lim)
	}
	// Chunks a workgroup (a power of two): fewer where they do not divide n.
	chunksPerWG := t.WG / perChunk
	for uint32(n)%chunksPerWG != 0 {
		chunksPerWG /= 2
	}
	t.WG = perChunk * chunksPerWG
	grid := [3]uint32{uint32(n) / chunksPerWG, uint32(sh.hk * rowBlocks), uint32(sh.batch)}
	if err := e.checkGrid(grid, [3]string{"key chunks (DecodeOptions.Splits)", "kv heads x row blocks", "sequences"}); err != nil {
		return nil, err
	}
	sg := uint32(0)
	if t.PinSubgroup {
		sg = t.SG
	}
	mergeLast := n > 1 && tu.mergeLast
	spec, err := decodeSpecs(variant, kern, o.DType, sh.d, t, tu, mergeLast)
	if err != nil {
		return nil, err
	}
	pipe, err := e.variantPipeline(variant, spec, sg)
	if err != nil {
		return nil, err
	}
	flags := c.flags
	if variant.Tier == devices.TierSubgroup {
		unit := uint32(4 / kern.dt.Size()) // values per word of a float K/V
		if kern.op != shaders.OpDecode {
			unit = 1 // quantized K/V: offsets and strides in words
		}
		if streamAligned(stream, placementOf(c.k, c.v), unit) {
			flags |= flagVec
		}
	}
	p := &plan{kernel: variant.Name}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	// With one chunk the results go straight to o and lse; bindings 6 and 7 take o's buffer,
	// never written, and so does the arrivals' binding where the kernel does not merge.
	partO, partLSE, arrivals := o.Buffer(), o.Buffer(), o.Buffer()
	if n > 1 {
		if partO, err = e.scratch(p, 4*uint64(n)*rowFloats*uint64(sh.d), "partial outputs"); err != nil {
			return nil, err
		}
		if partLSE, err = e.scratch(p, 4*uint64(n)*rowFloats, "partial logsumexps"); err != nil {
			return nil, err
		}
		flags |= flagPartial
	}
	if mergeLast {
		if arrivals, err = e.arrivalCounts(uint64(sh.totalQ) * uint64(grid[1])); err != nil {
			return nil, err
		}
	}
	push := withPush(c.push, pushFlags, flags)
	parts := []vk.BufferRange{{Buffer: partO.Buffer}, {Buffer: partLSE.Buffer}}
	bindings := append(append(slices.Clip(parts), kern.bindings...), vk.BufferRange{Buffer: arrivals.Buffer})
	steps, err := e.dispatches(c, pipe, push, grid, append([]uint32{uint32(chunk)}, kern.seq...), bindings...)
	if err != nil {
		return nil, err
	}
	p.steps = append(p.steps, steps...)
	if n == 1 {
		return p, nil
	}
	if mergeLast {
		p.kernel += "+" + mergeLastKernel
		return p, nil
	}
	ms, err := e.mergeStep(c.push, o.DType, sh.d, n, sh.totalQ, sh.hq, 0, 0,
		[]vk.BufferRange{{Buffer: c.q.Buffer().Buffer}, {Buffer: c.k.Buffer().Buffer}, {Buffer: c.v.Buffer().Buffer},
			{Buffer: o.Buffer().Buffer}, {Buffer: c.lse.Buffer}, parts[1], parts[0], parts[1]})
	if err != nil {
		return nil, err
	}
	p.steps = append(p.steps, ms)
	p.kernel += "+" + mergeKernel
	return p, nil
}

// scratch takes a device-local scratch buffer of at least size bytes for the plan from the
// engine's pool, to which the plan hands it back (what names it in errors). e.mu is held.
func (e *Engine) scratch(p *plan, size uint64, what string) (*memory.Buffer, error) {
	b, err := e.scratchPool.get(e.alloc, size, uint64(e.profile.MaxStorageBufferRange))
	if err != nil {
		return nil, fmt.Errorf("attention: %s (fp32, %d bytes): %w", what, size, err)
	}
	p.pool = &e.scratchPool
	p.pooled = append(p.pooled, b)
	return b, nil
}

// The automatic choice of a decode tier (docs/PERF.md, H100, 32k keys, 4 query heads per KV
// head): with one new token (4 rows per (sequence, kv head)) the subgroup tier ran fp16 K/V 4x
// and INT8 1.2-2x faster than the coopmat tier; with 4 new tokens (16 rows), which the subgroup
// tier reads K and V for 4 times, fp16 still 1.26x faster but INT8 2.6x slower (measured before
// the coopmat fetch loops were merged, which moved INT8 by 1.4-1.7x); with 16 (64 rows) 3.6x
// (fp16) and 3.8x (INT8) slower. So the coopmat tier comes first for more rows than
// decodeMatrixRows (float K/V) or decodeMatrixRowsQuantized, and never for FP8 or scaled
// queries, which it refuses (decodeKernel.wideQueries).
const (
	decodeMatrixRows          = 16
	decodeMatrixRowsQuantized = 4
)

// decodeOrder is the order in which the automatic choice tries the decode tiers, fastest first,
// for a call of kernel kern with rows rows per (sequence, kv head), over paged K and V or not.
// Paged K and V (a paged KV cache's views) do not take the coopmat tier automatically: its
// reads through block tables have not run on a GPU yet (forcing it runs them). Before any of
// them, where DecodeIMMAEnv turns them on, the tensor-core kernels take the INT8 and INT4 calls
// they fit (selectDecode, decode_imma.go), FP8 and scaled queries too.
func decodeOrder(kern decodeKernel, rows int, paged bool) []devices.Tier {
	least := decodeMatrixRows
	if kern.op != shaders.OpDecode {
		least = decodeMatrixRowsQuantized
	}
	if rows > least && kern.wideQueries == "" && !paged {
		return decodeMatrixOrder
	}
	return decodeStreamOrder
}

// The automatic orders of decodeOrder: the coopmat tier first, or not at all.
var (
	decodeMatrixOrder = []devices.Tier{devices.TierCoopMat, devices.TierSubgroup, devices.TierScalar}
	decodeStreamOrder = []devices.Tier{devices.TierSubgroup, devices.TierScalar}
)

// selectDecode picks the decode kernel of op (OpDecode or a quantized one) and its tiles for
// inputs of type dt, head dim d and rows per (sequence, kv head) at a forced tier, or the first
// of order that runs them, with the lane layout in which the kernel streams K and V at the
// subgroup tier (the zero layout at the others), the subgroup tier tuned by tu. Where imma says
// the call's K and V let op's tensor-core kernel take it (immaCall, and DecodeIMMAEnv 1), that
// kernel comes first, automatically and at a forced coopmat tier, wherever it runs them
// (immaTiles): on the H100 the subgroup tier's quantized kernels are bound by their per-key
// instructions (docs/PERF.md), which these move onto the tensor cores (not yet timed).
func selectDecode(p *devices.Profile, op shaders.Op, tier devices.Tier, order []devices.Tier, dt memory.DType, d, rows int, tu decodeTuning, imma bool) (*shaders.Variant, tiles, streamLayout, error) {
	if imma && (tier == devices.TierAuto || tier == devices.TierCoopMat) {
		if v, t, err := immaTiles(p, op, d, rows); err == nil {
			return v, t, streamLayout{}, nil
		}
	}
	bits := kvBits(op, dt)
	var chosen streamLayout // selectKernel takes the first tier whose tiles fit: the last that did
	v, t, err := selectKernelIn(p, op, tier, dt, order, func(t devices.Tier) (tiles, error) {
		tl, l, err := decodeTiles(t, p, d, rows, bits, dt, tu)
		if err == nil {
			chosen = l
		}
		return tl, err
	})
	if err != nil {
		return nil, tiles{}, streamLayout{}, err
	}
	return v, t, chosen, nil
}

// kvBits is the width of one K/V value that decode operation op reads, with queries of type dt.
func kvBits(op shaders.Op, dt memory.DType) uint32 {
	switch op {
	case shaders.OpDecodeInt8:
		return 8
	case shaders.OpDecodeInt4:
		return 4
	}
	return uint32(8 * dt.Size())
}

// kvPlacement is where the rows of K and V lie in their buffers: their token and head strides
// and offsets, in elements of the tensors that hold them (a quantized K's or V's codes), as the
// push constants carry them (params.glsl's kTokenStride to vHeadStride, kOff and vOff).
type kvPlacement struct {
	kTokenStride, kHeadStride, vTokenStride, vHeadStride uint32
	kOff, vOff                                           uint32
}

// multipleOf reports whether every stride and offset of at is a multiple of n.
func (at kvPlacement) multipleOf(n uint32) bool {
	for _, x := range []uint32{at.kTokenStride, at.kHeadStride, at.vTokenStride, at.vHeadStride, at.kOff, at.vOff} {
		if x%n != 0 {
			return false
		}
	}
	return true
}

// placementOf is the placement of K and V held by tensors k and v ([.., tokens, heads, D]).
func placementOf(k, v *memory.Tensor) kvPlacement {
	nk, nv := len(k.Strides), len(v.Strides)
	return kvPlacement{
		kTokenStride: uint32(k.Strides[nk-3]), kHeadStride: uint32(k.Strides[nk-2]),
		vTokenStride: uint32(v.Strides[nv-3]), vHeadStride: uint32(v.Strides[nv-2]),
		kOff: uint32(k.Offset), vOff: uint32(v.Offset),
	}
}

// streamAligned reports whether decode_stream.glsl may read K and V rows of layout l in loads of
// several words (FLAG_VEC): K's and V's strides and offsets (at), in units of which unit make a
// 32-bit word, and the row's words are multiples of the load.
func streamAligned(l streamLayout, at kvPlacement, unit uint32) bool {
	lw := min(l.vw, 4)
	if l.roww%lw != 0 {
		return false
	}
	return at.multipleOf(lw * unit)
}

// decodeShared is the shared memory decode.comp declares for these tiles: the scalar tier's K
// and V tiles (attend_tile.glsl); the subgroup tier's queries, each subgroup's BR rows of the
// lane layout's vectors (as many whatever the K/V type) of 8 fp32 values (decode_stream.glsl's
// qShared); the coopmat tier has the forward's (attend_coopmat.glsl); and every tier
// decodeMergeShared.
func decodeShared(tier devices.Tier, t tiles, d uint32) uint32 {
	switch tier {
	case devices.TierSubgroup:
		return t.WG/t.SG*t.BR*newStreamLayout(d, 32, t.SG).vpr*8*4 + decodeMergeShared
	case devices.TierCoopMat:
		return decodeCoopMatShared(t, d, 16)
	}
	return 4*(t.BC*(d+1)+t.BC*d) + decodeMergeShared // K (padded rows) and V tiles
}

// decodeMergeShared is the shared memory decode.comp declares itself at every tier: the word
// that tells a workgroup it arrived last (lastArrival).
const decodeMergeShared = 4

// decodeCoopMatShared is the shared memory of the coopmat decode kernel for K/V values of bits
// bits: the forward's arrays, with the scores and probabilities once per scale group of quantized
// K and V, and their K and V scales (attend_coopmat.glsl); and decodeMergeShared.
func decodeCoopMatShared(t tiles, d, bits uint32) uint32 {
	fwd := t.sharedBytes(devices.TierCoopMat, d) + decodeMergeShared
	if bits > 8 {
		return fwd
	}
	f := quant.Int8
	if bits == 4 {
		f = quant.Int4
	}
	groups := uint32(f.Groups(int(d)))
	return fwd + (groups-1)*t.coopMatScoreBytes() + 2*4*t.BC*groups
}

// streamLayout is decode_stream.glsl's lane layout: a key row of roww 32-bit words read in vectors
// of 8 values, vw words each; lpk lanes share a key, each reading vpl of its vpr vectors, so a
// subgroup reads kps keys at once.
type streamLayout struct {
	vw, roww, vpr, lpk, vpl, kps uint32
}

// newStreamLayout is the layout for head dim d, values of bits bits (32, 16, 8 or 4) and
// subgroup width sg, as the kernel derives it.
func newStreamLayout(d, bits, sg uint32) streamLayout {
	epw := 32 / bits
	l := streamLayout{vw: 8 / epw, roww: (d + epw - 1) / epw}
	l.vpr = (l.roww + l.vw - 1) / l.vw
	l.lpk = min(pow2Ceil(l.vpr), sg)
	l.vpl = (l.vpr + l.lpk - 1) / l.lpk
	l.kps = sg / l.lpk
	return l
}

// Subgroup-tier decode sizes: keys each lane reads per step (so several loads are in flight) for
// 16-bit K/V and for the other types, and the values of o one lane keeps in registers per row
// (and of q it reads from shared memory), at most, over the rows of a workgroup: 32, 4 rows where
// a lane reads one vector of a key. With 8 rows (64 values) the H100 ran a workgroup 7-8x
// slower than with 4, so reading K and V once per 4 rows is 3.7x faster there. On the H100, 4 keys a lane ran fp16 K/V 8% faster than 2, and
// INT8 and INT4 within 1.5% of their time at 2 (docs/PERF.md, 2026-12-07); bf16 takes fp16's
// setting unmeasured. f32 and the quantized types must share one setting: quantized decode then
// sums in the f32 kernel's order, which TestDecodeQuantizedEqualsFloatDecode checks bit for bit.
const (
	decodeStreamUnroll16 = 4
	decodeStreamUnroll   = 2
	decodeStreamValues   = 32
)

// The subgroup decode kernel's settings for tuning on a new device, read from the environment
// by every decode call; a malformed one fails the call (not the tier: DecodeTiers and its kin
// report the tiers at the defaults).
const (
	// DecodeUnrollEnv overrides the keys each lane reads per step (a positive integer; default
	// 4 for 16-bit K/V, 2 for the others).
	DecodeUnrollEnv = "VKATTN_DECODE_UNROLL"
	// DecodeSubgroupsEnv sets the subgroups a workgroup holds, each reading a chunk of its own
	// (a power of two, 1 to 16; default 1).
	DecodeSubgroupsEnv = "VKATTN_DECODE_SUBGROUPS"
	// DecodeContiguousEnv, set to 1, makes each chunk a range of keys, read a tile after the
	// other, instead of tiles interleaved with the other chunks' (the default, 0).
	DecodeContiguousEnv = "VKATTN_DECODE_CONTIGUOUS"
	// DecodeMergeLastEnv, set to 1, has the workgroup that finishes a block's chunks last merge
	// their partials inside the decode dispatch (decode.comp's MERGE_LAST), bit for bit as the
	// merge dispatch that follows it otherwise (0, the default) does.
	DecodeMergeLastEnv = "VKATTN_DECODE_MERGE_LAST"
	// DecodePrefetchEnv, set to 1, makes the subgroup tier issue each step's loads during the
	// step before, so that they are in flight while its arithmetic runs; 0, at the step's start.
	// Unset: 1 for INT8 and INT4 K/V, 0 for the others.
	DecodePrefetchEnv = "VKATTN_DECODE_PREFETCH"
)

// decodePrefetchBits: K/V values of at most this many bits load each step during the step
// before by default. On the H100 that took 6-15% off INT8 and INT4 decode times (128
// registers) and made fp16 4-11% slower (161 registers against 96) (docs/PERF.md,
// 2026-12-07); bf16 and f32 follow fp16 unmeasured.
const decodePrefetchBits = 8

// decodeTuning is those settings: unroll 0 means the default for the values' width, and
// prefetch counts only where prefetchSet (else decodePrefetchBits decides); imma is
// DecodeIMMAEnv set to 1, mergeLast DecodeMergeLastEnv.
type decodeTuning struct {
	unroll, subgroups                 uint32
	contiguous, prefetch, prefetchSet bool
	imma, mergeLast                   bool
}

// decodeTuningEnv reads the settings from the environment.
func decodeTuningEnv() (decodeTuning, error) {
	tu := decodeTuning{subgroups: 1}
	if env := os.Getenv(DecodeUnrollEnv); env != "" {
		u, err := strconv.Atoi(env)
		if err != nil || u < 1 || u > 64 {
			return tu, fmt.Errorf("attention: %s=%q: want keys per lane per step, 1 to 64", DecodeUnrollEnv, env)
		}
		tu.unroll = uint32(u)
	}
	if env := os.Getenv(DecodeSubgroupsEnv); env != "" {
		n, err := strconv.Atoi(env)
		if err != nil || n < 1 || n > 16 || n&(n-1) != 0 {
			return tu, fmt.Errorf("attention: %s=%q: want subgroups a workgroup, a power of two from 1 to 16", DecodeSubgroupsEnv, env)
		}
		tu.subgroups = uint32(n)
	}
	var err error
	if tu.contiguous, _, err = envSwitch(DecodeContiguousEnv); err != nil {
		return tu, err
	}
	if tu.prefetch, tu.prefetchSet, err = envSwitch(DecodePrefetchEnv); err != nil {
		return tu, err
	}
	if tu.imma, _, err = envSwitch(DecodeIMMAEnv); err != nil {
		return tu, err
	}
	tu.mergeLast, _, err = envSwitch(DecodeMergeLastEnv)
	return tu, err
}

// envSwitch reads a 0-or-1 setting: on, and whether it is set at all.
func envSwitch(env string) (on, set bool, err error) {
	switch v := os.Getenv(env); v {
	case "":
		return false, false, nil
	case "0", "1":
		return v == "1", true, nil
	default:
		return false, false, fmt.Errorf("attention: %s=%q: want 0 or 1", env, v)
	}
}

// prefetchFor reports whether the subgroup tier loads each step during the step before for K/V
// values of bits bits.
func (tu decodeTuning) prefetchFor(bits uint32) bool {
	if tu.prefetchSet {
		return tu.prefetch
	}
	return bits <= decodePrefetchBits
}

// decodeSpecs are the specialization constants of decode kernel variant for kern at tiles t:
// decode.comp's six, the kernel's own (decodeKernelSpecs at most, zero-padded), then
// CONTIGUOUS and PREFETCH (set at the subgroup tier only) and MERGE_LAST, as far as the last
// that is set.
func decodeSpecs(variant *shaders.Variant, kern decodeKernel, dt memory.DType, d int, t tiles, tu decodeTuning, mergeLast bool) ([]uint32, error) {
	if len(kern.spec) > decodeKernelSpecs {
		return nil, fmt.Errorf("attention: internal: %d specialization constants for decode kernel %s, at most %d", len(kern.spec), variant.Name, decodeKernelSpecs)
	}
	spec := make([]uint32, 6+decodeKernelSpecs, 6+decodeKernelSpecs+3)
	copy(spec, []uint32{dtypeCode(dt), uint32(d), t.BR, t.BC, t.WG, t.SG})
	copy(spec[6:], kern.spec)
	subgroup := variant.Tier == devices.TierSubgroup
	contiguous, prefetch := subgroup && tu.contiguous, subgroup && tu.prefetchFor(kvBits(kern.op, kern.dt))
	switch {
	case mergeLast:
		spec = append(spec, boolSpec(contiguous), boolSpec(prefetch), 1) // CONTIGUOUS, PREFETCH, MERGE_LAST
	case contiguous || prefetch:
		spec = append(spec, boolSpec(contiguous), boolSpec(prefetch))
	}
	return spec, nil
}

// boolSpec is a boolean specialization constant's value.
func boolSpec(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// unrollFor is the keys a lane reads per step for K/V values of bits bits.
func (tu decodeTuning) unrollFor(bits uint32) uint32 {
	switch {
	case tu.unroll > 0:
		return tu.unroll
	case bits == 16:
		return decodeStreamUnroll16
	}
	return decodeStreamUnroll
}

// decodeTiles sizes the decode kernel for head dim d, K/V values of bits bits (of type dt, for
// the coopmat tier) and rows per (sequence, kv head) — new tokens times query heads per kv head:
// as many of them in one workgroup as the tier allows (powers of two, so that few pipelines are
// built), so that each K/V byte is read once. The scalar tier is bounded by the workgroup size
// and shared memory (at most 64 rows), the subgroup tier by registers: a lane keeps 8 · vpl
// values of o per row in registers and reads as many of q from shared memory,
// decodeStreamValues at most (4 rows where one lane reads one vector of a key), with fewer
// subgroups a workgroup than tu asks where their queries exceed shared memory; the coopmat tier
// takes a subgroup per 16 rows, up to the forward's subgroups (decodeCoopMatTiles; quantized
// K/V staged as dt). At the subgroup tier it also
// returns the lane layout the tiles are sized for; at the others the zero layout. The subgroup
// tier's tiles follow tu.
func decodeTiles(tier devices.Tier, p *devices.Profile, d, rows int, bits uint32, dt memory.DType, tu decodeTuning) (tiles, streamLayout, error) {
	dd := uint32(d)
	maxShared, maxWG := p.MaxSharedMemory, min(p.MaxWorkgroupInvocations, p.MaxWorkgroupSize[0])
	want := pow2Ceil(uint32(max(rows, 1)))
	switch tier {
	case devices.TierScalar:
		br := min(want, 64, pow2Floor(maxWG))
		t := tiles{BR: br, WG: br, BC: 32, SG: 1}
		for t.BC > 1 && decodeShared(tier, t, dd) > maxShared {
			t.BC /= 2
		}
		if decodeShared(tier, t, dd) <= maxShared {
			return t, streamLayout{}, nil
		}
	case devices.TierSubgroup:
		sg := p.SubgroupSize
		if sg == 0 || maxWG < sg {
			break
		}
		u := tu.unrollFor(bits)
		nsub := min(max(tu.subgroups, 1), pow2Floor(maxWG/sg))
		l := newStreamLayout(dd, bits, sg)
		br := min(want, pow2Floor(max(1, decodeStreamValues/(8*l.vpl))))
		t := tiles{SG: sg, WG: sg * nsub, BR: br, BC: l.kps * u, PinSubgroup: p.MinSubgroupSize != p.MaxSubgroupSize}
		for t.WG > sg && decodeShared(tier, t, dd) > maxShared {
			t.WG /= 2 // fewer subgroups a workgroup, each with its queries
		}
		if decodeShared(tier, t, dd) <= maxShared {
			return t, l, nil
		}
	case devices.TierCoopMat:
		t, err := decodeCoopMatTiles(p, dd, rows, dt, bits)
		return t, streamLayout{}, err
	}
	return tiles{}, streamLayout{}, fmt.Errorf("attention: head dim %d does not fit %d bytes of shared memory at tier %s", d, maxShared, tier)
}

// decodeCoopMatTiles sizes the coopmat decode kernel (attend_coopmat.glsl): a subgroup per 16 of
// the rows, as many as the forward's tiles have at most (coopMatTiles), so that a call of few rows
// (one new token, a few query heads per kv head) takes one subgroup; tiles of 16 keys per subgroup
// of the workgroup (each scores all of them for its rows), so that each invocation stages D / 16
// 16-byte words of K and of V per tile (8 at d = 128, one tile ahead in registers), fewer keys
// where shared memory runs out.
func decodeCoopMatTiles(p *devices.Profile, d uint32, rows int, dt memory.DType, bits uint32) (tiles, error) {
	tier := devices.TierCoopMat
	f, err := coopMatTiles(p, d, dt)
	if err != nil {
		return tiles{}, err
	}
	nsg := min(f.WG/f.SG, pow2Ceil(uint32(ceilDiv(max(rows, 1), coopTM))))
	t := tiles{SG: f.SG, WG: nsg * f.SG, BR: coopTM * nsg, BC: coopTM * nsg, PinSubgroup: f.PinSubgroup}
	for t.BC > coopTM && decodeCoopMatShared(t, d, bits) > p.MaxSharedMemory {
		t.BC -= coopTM
	}
	if decodeCoopMatShared(t, d, bits) > p.MaxSharedMemory {
		return tiles{}, fmt.Errorf("attention: head dim %d does not fit %d bytes of shared memory at tier %s", d, p.MaxSharedMemory, tier)
	}
	return t, nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// pow2Ceil is the least power of two >= x (x >= 1).
func pow2Ceil(x uint32) uint32 { return 1 << bits.Len32(x-1) }

// pow2Floor is the greatest power of two <= x (x >= 1).
func pow2Floor(x uint32) uint32 { return 1 << (bits.Len32(x) - 1) }
