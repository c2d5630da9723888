package attention

import (
	"context"
	"fmt"
	"slices"

	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/shaders"
	"github.com/vkattn/vkattn/vk"
)

// mergeKernel is the kernel name Merge reports (and Decode's second dispatch); Decode reports
// mergeLastKernel where its last workgroups merge instead (DecodeMergeLastEnv).
const (
	mergeKernel     = "merge"
	mergeLastKernel = "lastmerge"
)

// Merge combines partial attention results of the same queries over disjoint key sets into the
// exact result over their union, as the second pass of split-KV decoding does: for each row
// (token, head), lse = log sum_s exp(lse_s) and O = sum_s exp(lse_s - lse) O_s.
//
// partO holds S partial outputs, fp32 [S, ...o] where o is shaped as Forward's output ([B, L, H,
// D] or [tokens, H, D]); partLSE their logsumexps, fp32 [S, ...o without the head dim]; both
// contiguous. Such partials are Forward's fp32 outputs and logsumexps over parts of the keys. A
// partial whose logsumexp is -Inf (it saw no key) contributes nothing; a row that is -Inf in
// every partial gives O = 0 and logsumexp -Inf, as Forward gives a row that sees no key; NaN
// spreads as in Forward. Merge allocates an fp32 output and its logsumexp.
func (e *Engine) Merge(ctx context.Context, partO, partLSE *memory.Tensor) (*Result, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	if partO == nil {
		return nil, fmt.Errorf("attention: partO is nil")
	}
	if len(partO.Shape) < 2 {
		return nil, fmt.Errorf("attention: partO has shape %v, want [S, batch, seq, heads, head_dim] or [S, tokens, heads, head_dim]", partO.Shape)
	}
	return e.newResult(memory.F32, partO.Shape[1:], true, func(o, lse *memory.Tensor) (string, error) {
		return e.MergeInto(ctx, o, lse, partO, partLSE)
	})
}

// MergeInto is Merge into o (fp32, fp16 or bf16; strided as Forward's output may be) and, if not
// nil, lse (fp32, o's shape without the head dim). It returns the kernel that ran.
func (e *Engine) MergeInto(ctx context.Context, o, lse, partO, partLSE *memory.Tensor) (string, error) {
	return e.runBuilt(ctx, func() (*plan, error) { return e.planMerge(o, lse, partO, partLSE) })
}

func (e *Engine) planMerge(o, lse, partO, partLSE *memory.Tensor) (_ *plan, err error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	args := []arg{{"partO", partO}, {"partLSE", partLSE}, {"o", o}}
	if err := e.checkArgs(args, lse); err != nil {
		return nil, err
	}
	for _, a := range args[:2] {
		if a.t.DType != memory.F32 || !a.t.Contiguous() {
			return nil, fmt.Errorf("attention: %s must be a contiguous f32 tensor, got %s %v strides %v", a.name, a.t.DType, a.t.Shape, a.t.Strides)
		}
	}
	rank := len(o.Shape)
	layout := "[batch, seq, heads, head_dim] or [tokens, heads, head_dim]"
	if rank != 3 && rank != 4 {
		return nil, fmt.Errorf("attention: o has shape %v, want %s", o.Shape, layout)
	}
	if err := checkLayout(args[2], layout, rank); err != nil {
		return nil, err
	}
	if rank == 4 {
		if err := checkBatchStride(args[2]); err != nil {
			return nil, err
		}
	}
	d, hq := o.Shape[rank-1], o.Shape[rank-2]
	if !slices.Contains(HeadDims, d) {
		return nil, fmt.Errorf("attention: o: head dim %d is not supported (have %v)", d, HeadDims)
	}
	if len(partO.Shape) != rank+1 || !slices.Equal(partO.Shape[1:], o.Shape) {
		return nil, fmt.Errorf("attention: partO has shape %v, want [S] followed by o's shape %v", partO.Shape, o.Shape)
	}
	n := partO.Shape[0]
	if want := append([]int{n}, o.Shape[:rank-1]...); !slices.Equal(partLSE.Shape, want) {
		return nil, fmt.Errorf("attention: partLSE has shape %v, want %v (partO's without the head dim)", partLSE.Shape, want)
	}
	if err := checkOutputs(o, lse, args[:2]); err != nil {
		return nil, err
	}
	tokens := 1
	for _, x := range o.Shape[:rank-2] {
		tokens *= x
	}
	flags, lseBuf := uint32(0), o.Buffer()
	if lse != nil {
		flags, lseBuf = flagWriteLSE, lse.Buffer()
	}
	base := make([]uint32, shaders.PushWords)
	base[pushHq], base[pushFlags] = uint32(hq), flags
	base[pushOTokenStride], base[pushOHeadStride], base[pushOOff] = uint32(o.Strides[rank-3]), uint32(o.Strides[rank-2]), uint32(o.Offset)
	pb, lb := partO.Buffer().Buffer, partLSE.Buffer().Buffer
	p := &plan{kernel: mergeKernel}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	s, err := e.mergeStep(pushWords(base...), o.DType, d, n, tokens, hq, partO.Offset, partLSE.Offset,
		[]vk.BufferRange{{Buffer: pb}, {Buffer: pb}, {Buffer: pb}, {Buffer: o.Buffer().Buffer}, {Buffer: lseBuf.Buffer},
			{Buffer: lb}, {Buffer: pb}, {Buffer: lb}})
	if err != nil {
		return nil, err
	}
	p.steps = append(p.steps, s)
	return p, nil
}

// mergeWG is the merge kernel's workgroup size where the device allows it.
const mergeWG = 64

// mergeStep plans merge.comp over n partials of tokens x hq rows of head dim d, from float
// offsets poOff and plOff of bindings 6 and 7, into an output of type dt; push holds the
// output's strides, offset, hq and flags (params.glsl); bindings are the kernel's eight.
func (e *Engine) mergeStep(push []byte, dt memory.DType, d, n, tokens, hq, poOff, plOff int, bindings []vk.BufferRange) (step, error) {
	variant, err := shaders.ForTierOn(shaders.OpMerge, devices.TierScalar, &e.profile)
	if err != nil {
		return step{}, fmt.Errorf("attention: merge: %w", err)
	}
	wg := min(mergeWG, pow2Floor(min(e.profile.MaxWorkgroupInvocations, e.profile.MaxWorkgroupSize[0])))
	pipe, err := e.variantPipeline(variant, []uint32{dtypeCode(dt), uint32(d), wg}, 0)
	if err != nil {
		return step{}, err
	}
	// One invocation per dim pair of a row; the kernel loops over what the grid's width leaves.
	items := uint64(tokens) * uint64(hq) * uint64(d/2)
	groups := uint32(min((items+uint64(wg)-1)/uint64(wg), uint64(e.profile.MaxWorkgroupCount[0])))
	set, err := pipe.NewDescriptorSet(bindings...)
	if err != nil {
		return step{}, fmt.Errorf("attention: merge: %w", err)
	}
	push = withPush(push, pushNSeq, uint32(n), pushHk, uint32(tokens), pushQOff, uint32(poOff), pushKOff, uint32(plOff))
	return step{set: set, push: push, grid: [3]uint32{max(groups, 1), 1, 1}}, nil
}
