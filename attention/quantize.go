package attention

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/quant"
	"github.com/vkattn/vkattn/shaders"
	"github.com/vkattn/vkattn/vk"
)

// quantizeKernel is the kernel name Quantize runs.
const quantizeKernel = "quantize"

// quantizeWG is the quantize kernel's workgroup size where the device allows it.
const quantizeWG = 64

// Quantize quantizes x, a float tensor (f32, f16 or bf16) shaped [tokens, H, D] or [B, L, H, D]
// as attention's q, k and v are, into format f on the device: the codes and bf16 scales that
// quant.Quantize gives x's values, bit for bit (package quant specifies every step in float32;
// the kernel, shaders/glsl/quantize.comp, follows it, finding each nearest code exactly although
// Vulkan's division is not). Groups holding a NaN or an infinity get quant.NaNScale and zero
// codes, as quant.Quantize gives them. The result, shaped as x, feeds DecodeQuantized as K, V
// (Int8, Int4) or FP8Queries (E4M3), as UploadQuantized's does; the caller closes it.
//
// x's head dim must be contiguous and one that f packs (quant.Format.Check); tokens and heads
// may be strided (16-bit types at even offsets and strides), a dense [B, L, H, D] with a batch
// stride of L token strides. Errors name the argument; nothing is dispatched then, and nothing
// is left allocated.
func (e *Engine) Quantize(ctx context.Context, f quant.Format, x *memory.Tensor) (*Quantized, error) {
	return e.QuantizeWith(ctx, f, x, QuantizeOptions{})
}

// QuantizeOptions are QuantizeWith's and QuantizeIntoWith's options.
type QuantizeOptions struct {
	// Scales, if set, are per-(head, channel) multipliers, as RoPE-aware key scaling applies
	// them (quant.KeyScales.K): an f32 tensor [H, D], contiguous, with x's heads and head dim;
	// the kernel multiplies channel c of every token's head h by Scales[h, c] (one float32
	// multiplication, as quant.KeyScales.ScaleKeys does) before anything else, so the result is
	// quant.Quantize(f, ks.ScaleKeys(x)), bit for bit. Queries attending to such keys are scaled
	// by quant.KeyScales.Q: QuantizedDecodeOptions.QueryScales.
	Scales *memory.Tensor
}

// QuantizeWith is Quantize with options: with opts.Scales, x is scaled before it is quantized.
// A bad Scales (another engine's, closed, not f32, not [H, D] or not contiguous) is an error naming
// QuantizeOptions.Scales.
func (e *Engine) QuantizeWith(ctx context.Context, f quant.Format, x *memory.Tensor, opts QuantizeOptions) (*Quantized, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	if err := e.checkQuantizeInput(f, x); err != nil {
		return nil, err
	}
	if err := e.checkQuantizeScales(opts.Scales, x); err != nil {
		return nil, inQuantize(err)
	}
	cs, ss := quantizedShapes(f, x.Shape)
	codes, err := e.NewTensor(memory.F32, cs...)
	if err != nil {
		return nil, fmt.Errorf("attention: Quantize: codes: %w", err)
	}
	scales, err := e.NewTensor(memory.BF16, ss...)
	if err != nil {
		codes.Close()
		return nil, fmt.Errorf("attention: Quantize: scales: %w", err)
	}
	out := &Quantized{Format: f, Codes: codes, Scales: scales}
	if err := e.QuantizeIntoWith(ctx, out, x, opts); err != nil {
		out.Close()
		return nil, err
	}
	return out, nil
}

// QuantizeInto is Quantize into out, in out.Format: out.Codes an f32 tensor of x's shape with
// D/PerWord words per row, out.Scales a bf16 tensor of x's shape with Groups(D) scales per row,
// both contiguous, the scales starting at an even element (the kernel writes them in whole
// 32-bit words; where their count is odd, it rewrites the word of the last one keeping the 16
// bits after it, which may be another tensor's), neither overlapping x or the other.
func (e *Engine) QuantizeInto(ctx context.Context, out *Quantized, x *memory.Tensor) error {
	return e.QuantizeIntoWith(ctx, out, x, QuantizeOptions{})
}

// QuantizeIntoWith is QuantizeInto with options (QuantizeWith); opts.Scales must not overlap
// out's codes or scales.
func (e *Engine) QuantizeIntoWith(ctx context.Context, out *Quantized, x *memory.Tensor, opts QuantizeOptions) error {
	_, err := e.runBuilt(ctx, func() (*plan, error) { return e.planQuantize(out, x, opts) })
	return err
}

// quantizeJob is one quantization of a batch (quantizeBatch): x into out, with opts.
type quantizeJob struct {
	out  *Quantized
	x    *memory.Tensor
	opts QuantizeOptions
}

// quantizeBatch runs QuantizeIntoWith for every job in one submission, their dispatches side by
// side, without barriers between them: no job's output may overlap another's, nor any job's
// input. Where a job does not validate, nothing is dispatched and its error is wrap(i, err).
func (e *Engine) quantizeBatch(ctx context.Context, jobs []quantizeJob, wrap func(i int, err error) error) error {
	_, err := e.runBuilt(ctx, func() (*plan, error) {
		p := &plan{kernel: quantizeKernel}
		for i, j := range jobs {
			jp, err := e.planQuantize(j.out, j.x, j.opts) // steps only: no scratch
			if err != nil {
				p.close()
				return nil, wrap(i, err)
			}
			for _, s := range jp.steps {
				s.join = len(p.steps) > 0
				p.steps = append(p.steps, s)
			}
		}
		return p, nil
	})
	return err
}

// checkQuantizeScales checks QuantizeOptions.Scales (nil is none) against a valid x: a live
// contiguous f32 tensor [H, D] of e, with x's heads and head dim.
func (e *Engine) checkQuantizeScales(s, x *memory.Tensor) error {
	if s == nil {
		return nil
	}
	const name = "QuantizeOptions.Scales"
	if err := e.owned(name, s); err != nil {
		return err
	}
	n := len(x.Shape)
	if want := []int{x.Shape[n-2], x.Shape[n-1]}; s.DType != memory.F32 || !slices.Equal(s.Shape, want) || !s.Contiguous() {
		return fmt.Errorf("attention: %s must be a contiguous f32 tensor of shape %v (x's heads, head dim), got %s %v strides %v",
			name, want, s.DType, s.Shape, s.Strides)
	}
	return nil
}

// quantizedShapes are the shapes of the codes and scales of a float tensor of shape x in format f.
func quantizedShapes(f quant.Format, x []int) (codes, scales []int) {
	n := len(x)
	codes, scales = slices.Clone(x), slices.Clone(x)
	codes[n-1], scales[n-1] = x[n-1]/f.PerWord(), f.Groups(x[n-1])
	return codes, scales
}

// checkQuantizeInput validates Quantize's format and input.
func (e *Engine) checkQuantizeInput(f quant.Format, x *memory.Tensor) error {
	if x == nil {
		return fmt.Errorf("attention: Quantize: x is nil")
	}
	if err := e.owned("x", x); err != nil {
		return inQuantize(err)
	}
	if f != quant.Int8 && f != quant.Int4 && f != quant.E4M3 {
		return fmt.Errorf("attention: Quantize: unknown format %d (want %v, %v or %v)", uint8(f), quant.Int8, quant.Int4, quant.E4M3)
	}
	if x.DType != memory.F32 && x.DType != memory.F16 && x.DType != memory.BF16 {
		return fmt.Errorf("attention: Quantize: x must be a float tensor (f32, f16 or bf16), got %s", x.DType)
	}
	a := arg{"x", x}
	rank := len(x.Shape)
	layout := "[tokens, heads, head_dim] or [batch, seq, heads, head_dim]"
	if rank != 3 && rank != 4 {
		return fmt.Errorf("attention: Quantize: x has shape %v, want %s", x.Shape, layout)
	}
	if err := checkLayout(a, layout, rank); err != nil {
		return inQuantize(err)
	}
	if rank == 4 {
		if err := checkBatchStride(a); err != nil {
			return inQuantize(err)
		}
	}
	if err := f.Check(x.Shape[rank-1]); err != nil {
		return fmt.Errorf("attention: Quantize: x: %w", err)
	}
	return nil
}

// checkQuantizeOutput validates QuantizeInto's out against the input x (valid).
func (e *Engine) checkQuantizeOutput(out *Quantized, x *memory.Tensor) error {
	if out == nil {
		return fmt.Errorf("attention: QuantizeInto: out is nil")
	}
	cs, ss := quantizedShapes(out.Format, x.Shape)
	for _, w := range []struct {
		arg
		dt    memory.DType
		shape []int
	}{{arg{"out.Codes", out.Codes}, memory.F32, cs}, {arg{"out.Scales", out.Scales}, memory.BF16, ss}} {
		if w.t == nil {
			return fmt.Errorf("attention: QuantizeInto: %s is nil", w.name)
		}
		if err := e.owned(w.name, w.t); err != nil {
			return &opError{op: "QuantizeInto", err: err}
		}
		if w.t.DType != w.dt || !slices.Equal(w.t.Shape, w.shape) || !w.t.Contiguous() {
			return fmt.Errorf("attention: QuantizeInto: %s must be a contiguous %s tensor of shape %v (x %v as %v), got %s %v strides %v",
				w.name, w.dt, w.shape, x.Shape, out.Format, w.t.DType, w.t.Shape, w.t.Strides)
		}
		if overlap(w.t, x) {
			return fmt.Errorf("attention: QuantizeInto: %s overlaps x in memory", w.name)
		}
	}
	if out.Scales.Offset%2 != 0 {
		return fmt.Errorf("attention: QuantizeInto: out.Scales must start at an even element, got offset %d", out.Scales.Offset)
	}
	// The scales' extent in whole words: the kernel rewrites the word of an odd count's last scale.
	lo, hi := extent(out.Scales)
	hi = (hi + 3) &^ 3
	for _, r := range []arg{{"x", x}, {"out.Codes", out.Codes}} {
		if r.t.Buffer() != out.Scales.Buffer() {
			continue
		}
		if rlo, rhi := extent(r.t); rlo < hi && lo < rhi {
			return fmt.Errorf("attention: QuantizeInto: out.Scales overlaps %s in memory", r.name)
		}
	}
	return nil
}

// planQuantize validates and plans QuantizeInto; e.mu is held.
func (e *Engine) planQuantize(out *Quantized, x *memory.Tensor, opts QuantizeOptions) (*plan, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	if out == nil {
		return nil, fmt.Errorf("attention: QuantizeInto: out is nil")
	}
	f := out.Format
	if err := e.checkQuantizeInput(f, x); err != nil {
		return nil, err
	}
	if err := e.checkQuantizeOutput(out, x); err != nil {
		return nil, err
	}
	ms := opts.Scales
	if err := e.checkQuantizeScales(ms, x); err != nil {
		return nil, &opError{op: "QuantizeInto", err: err}
	}
	if ms != nil {
		for _, w := range []arg{{"out.Codes", out.Codes}, {"out.Scales", out.Scales}} {
			if overlap(w.t, ms) {
				return nil, fmt.Errorf("attention: QuantizeInto: %s overlaps QuantizeOptions.Scales in memory", w.name)
			}
		}
	}
	variant, err := shaders.ForTierOn(shaders.OpQuantize, devices.TierScalar, &e.profile)
	if err != nil {
		return nil, fmt.Errorf("attention: Quantize: %w", err)
	}
	rank := len(x.Shape)
	d, heads := x.Shape[rank-1], x.Shape[rank-2]
	rows := 1
	for _, n := range x.Shape[:rank-1] {
		rows *= n
	}
	wg := min(quantizeWG, pow2Floor(min(e.profile.MaxWorkgroupInvocations, e.profile.MaxWorkgroupSize[0])))
	// Binding 3: the multipliers, or x's buffer, never read, where there are none.
	scaled, mul, mulOff := uint32(0), vk.BufferRange{Buffer: x.Buffer().Buffer}, uint32(0)
	if ms != nil {
		scaled, mul, mulOff = 1, vk.BufferRange{Buffer: ms.Buffer().Buffer}, uint32(ms.Offset)
	}
	pipe, err := e.variantPipeline(variant, []uint32{dtypeCode(x.DType), uint32(d), wg, uint32(f), uint32(f.GroupSize(d)), scaled}, 0)
	if err != nil {
		return nil, err
	}
	// One invocation per scale word (two groups); the kernel loops over what the grid leaves.
	groups := uint64(rows) * uint64(f.Groups(d))
	items := (groups + 1) / 2
	n := uint32(min((items+uint64(wg)-1)/uint64(wg), uint64(e.profile.MaxWorkgroupCount[0])))
	set, err := pipe.NewDescriptorSet(vk.BufferRange{Buffer: x.Buffer().Buffer},
		vk.BufferRange{Buffer: out.Codes.Buffer().Buffer}, vk.BufferRange{Buffer: out.Scales.Buffer().Buffer}, mul)
	if err != nil {
		return nil, fmt.Errorf("attention: Quantize: %w", err)
	}
	set.After(memory.BindPoints(x, out.Codes, out.Scales, ms)...) // views of a KV cache whose pages may be binding
	push := pushWords(uint32(groups), uint32(heads), uint32(x.Strides[rank-3]), uint32(x.Strides[rank-2]), uint32(x.Offset),
		uint32(out.Codes.Offset), uint32(out.Scales.Offset/2), mulOff)
	return &plan{kernel: quantizeKernel, steps: []step{{set: set, push: push, grid: [3]uint32{max(n, 1), 1, 1}}}}, nil
}

// opError is an error of a check shared with other operations, said of operation op: "attention:
// op: ..." where err says "attention: ...".
type opError struct {
	op  string
	err error
}

func (e *opError) Error() string {
	return "attention: " + e.op + ": " + strings.TrimPrefix(e.err.Error(), "attention: ")
}

func (e *opError) Unwrap() error { return e.err }

func inQuantize(err error) error { return &opError{op: "Quantize", err: err} }
