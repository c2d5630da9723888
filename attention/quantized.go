package attention

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/quant"
)

// Quantized is a quantized tensor on the device: the packed codes and bf16 scales of a
// quant.Tensor (package quant defines the formats), standing for a float tensor of shape
// [B, L, H, D] (dense) or [tokens, H, D] (varlen). DecodeQuantized takes K and V as Int8 or
// Int4, and FP8 (E4M3) queries.
//
// UploadQuantized makes one from quant's host data (quant.Quantize or quant.Pack); Quantize makes
// one from a float tensor on the device, bit for bit as quant.Quantize would.
type Quantized struct {
	Format quant.Format
	// Codes are the packed words (quant.Tensor.Words), [B, L, H, D/PerWord] or
	// [tokens, H, D/PerWord], held in an f32 tensor as 32-bit words: the kernels read their bits,
	// never their values.
	Codes *memory.Tensor
	// Scales are the bf16 scales (quant.Tensor.Scales), [B, L, H, Groups] or [tokens, H, Groups].
	Scales *memory.Tensor
}

// Shape is the shape of the float tensor x stands for: its codes' shape, with D (codes per row)
// last.
func (x *Quantized) Shape() []int {
	s := slices.Clone(x.Codes.Shape)
	s[len(s)-1] *= x.Format.PerWord()
	return s
}

// Close releases the codes and scales. Idempotent.
func (x *Quantized) Close() {
	if x != nil {
		x.Codes.Close()
		x.Scales.Close()
	}
}

// UploadQuantized allocates a Quantized tensor of shape (the float tensor's: [B, L, H, D] or
// [tokens, H, D]) and fills it with t's codes and scales, exactly. The shape must hold t's
// Tokens x Heads x Dim elements as [tokens..., Heads, Dim].
func (e *Engine) UploadQuantized(ctx context.Context, t *quant.Tensor, shape ...int) (*Quantized, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	if t == nil {
		return nil, fmt.Errorf("attention: UploadQuantized: the tensor is nil")
	}
	if err := t.Format.Check(t.Dim); err != nil {
		return nil, fmt.Errorf("attention: UploadQuantized: %w", err)
	}
	n := len(shape)
	tokens := 1
	for _, s := range shape[:max(n-2, 0)] {
		tokens *= s
	}
	if n < 3 || shape[n-1] != t.Dim || shape[n-2] != t.Heads || tokens != t.Tokens {
		return nil, fmt.Errorf("attention: UploadQuantized: shape %v does not hold a %v tensor of %d tokens, %d heads of dim %d",
			shape, t.Format, t.Tokens, t.Heads, t.Dim)
	}
	per, groups := t.Format.PerWord(), t.Format.Groups(t.Dim)
	if len(t.Words) != t.Tokens*t.Heads*t.Dim/per || len(t.Scales) != t.Tokens*t.Heads*groups {
		return nil, fmt.Errorf("attention: UploadQuantized: %d words and %d scales, want %d and %d",
			len(t.Words), len(t.Scales), t.Tokens*t.Heads*t.Dim/per, t.Tokens*t.Heads*groups)
	}
	cs, ss := slices.Clone(shape), slices.Clone(shape)
	cs[n-1], ss[n-1] = t.Dim/per, groups
	// An f32 tensor stores the bits of each float32 as they are, and a bf16 tensor a value that
	// bf16 holds exactly (NaN scales become 0x7fc0, quant's NaNScale): the upload is exact.
	words := make([]float32, len(t.Words))
	for i, w := range t.Words {
		words[i] = math.Float32frombits(w)
	}
	scales := make([]float32, len(t.Scales))
	for i, s := range t.Scales {
		scales[i] = quant.BF16Value(s)
	}
	codes, err := e.Upload(ctx, memory.F32, words, cs...)
	if err != nil {
		return nil, fmt.Errorf("attention: UploadQuantized: codes: %w", err)
	}
	sc, err := e.Upload(ctx, memory.BF16, scales, ss...)
	if err != nil {
		codes.Close()
		return nil, fmt.Errorf("attention: UploadQuantized: scales: %w", err)
	}
	return &Quantized{Format: t.Format, Codes: codes, Scales: sc}, nil
}

// operand is a tensor argument of an attention call as validation sees it: a float tensor t, or
// a quantized one, qz, in one of formats (quantized is set even where qz is nil).
type operand struct {
	name      string
	t         *memory.Tensor
	qz        *Quantized
	quantized bool
	formats   []quant.Format
}

func floatOperand(name string, t *memory.Tensor) operand { return operand{name: name, t: t} }

func quantizedOperand(name string, x *Quantized, formats ...quant.Format) operand {
	return operand{name: name, qz: x, quantized: true, formats: formats}
}

func (a operand) missing() bool {
	if a.quantized {
		return a.qz == nil
	}
	return a.t == nil
}

// parts are the memory tensors the operand lives in, named as errors name them.
func (a operand) parts() []arg {
	if !a.quantized {
		return []arg{{a.name, a.t}}
	}
	return []arg{{a.name + ".Codes", a.qz.Codes}, {a.name + ".Scales", a.qz.Scales}}
}

// primary is the tensor whose strides and offset the kernels' push constants carry: the float
// tensor, or the codes (in words).
func (a operand) primary() *memory.Tensor {
	if a.quantized {
		return a.qz.Codes
	}
	return a.t
}

// shape is the shape of the operand as attention sees it (a quantized one's Shape).
func (a operand) shape() []int {
	if a.quantized {
		return a.qz.Shape()
	}
	return a.t.Shape
}

// checkLayout checks the operand's rank and layout (layout describes the shape wanted); a
// quantized operand's format, codes and scales besides.
func (a operand) checkLayout(layout string, rank int) error {
	if !a.quantized {
		return checkLayout(arg{a.name, a.t}, layout, rank)
	}
	x := a.qz
	if !slices.Contains(a.formats, x.Format) {
		want := make([]string, len(a.formats))
		for i, f := range a.formats {
			want[i] = f.String()
		}
		return fmt.Errorf("attention: %s has format %v, want %s", a.name, x.Format, strings.Join(want, " or "))
	}
	if x.Codes.DType != memory.F32 {
		return fmt.Errorf("attention: %s.Codes must hold 32-bit words (an f32 tensor), got %s", a.name, x.Codes.DType)
	}
	if x.Scales.DType != memory.BF16 {
		return fmt.Errorf("attention: %s.Scales must be bf16, got %s", a.name, x.Scales.DType)
	}
	lead := "[batch, seq, heads, "
	if rank == 3 {
		lead = "[tokens, heads, "
	}
	for _, p := range []struct {
		arg
		last string
	}{{arg{a.name + ".Codes", x.Codes}, "words]"}, {arg{a.name + ".Scales", x.Scales}, "groups]"}} {
		if len(p.t.Shape) != rank {
			return fmt.Errorf("attention: %s has shape %v, want %s", p.name, p.t.Shape, lead+p.last)
		}
		if p.t.Strides[rank-1] != 1 {
			return fmt.Errorf("attention: %s: the last dim must be contiguous (stride %d)", p.name, p.t.Strides[rank-1])
		}
	}
	if !slices.Equal(x.Codes.Shape[:rank-1], x.Scales.Shape[:rank-1]) {
		return fmt.Errorf("attention: %s.Scales has shape %v but %s.Codes has %v: they must agree but for the last dim",
			a.name, x.Scales.Shape, a.name, x.Codes.Shape)
	}
	d := x.Codes.Shape[rank-1] * x.Format.PerWord()
	if g := x.Format.Groups(d); x.Scales.Shape[rank-1] != g {
		return fmt.Errorf("attention: %s.Scales has %d scales per row, want %d (%v, head dim %d)",
			a.name, x.Scales.Shape[rank-1], g, x.Format, d)
	}
	return nil
}

// nameList is "a, b and c" of the operands' names.
func nameList(ops []operand) string {
	s := ops[0].name
	for i, a := range ops[1:] {
		if i == len(ops)-2 {
			s += " and " + a.name
		} else {
			s += ", " + a.name
		}
	}
	return s
}
