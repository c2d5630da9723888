package quant

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Tensor is a quantized tensor of Tokens x Heads rows of Dim channels, as kernels read it.
//
// Words is [Tokens][Heads][Dim/PerWord] uint32: word w of row (t, h) holds channels
// w·PerWord .. w·PerWord+PerWord-1, channel w·PerWord+i in bits Bits·i .. Bits·i+Bits-1 (the
// first channel in the least significant bits). Scales is [Tokens][Heads][Groups] bf16 bits;
// group g covers channels g·GroupSize .. (g+1)·GroupSize-1. Element (t, h, c) dequantizes to
// Format.Value(field) · BF16Value(scale), one float32 multiplication that is exact.
type Tensor struct {
	Format             Format
	Tokens, Heads, Dim int
	Words              []uint32
	Scales             []uint16
}

func checkShape(f Format, n, tokens, heads, dim int) error {
	if err := f.Check(dim); err != nil {
		return err
	}
	if tokens < 0 || heads <= 0 {
		return fmt.Errorf("quant: tokens must be >= 0 and heads > 0, got %d and %d", tokens, heads)
	}
	if n != tokens*heads*dim {
		return fmt.Errorf("quant: %d values for [%d][%d][%d], want %d", n, tokens, heads, dim, tokens*heads*dim)
	}
	return nil
}

func newTensor(f Format, tokens, heads, dim int) *Tensor {
	rows := tokens * heads
	return &Tensor{
		Format: f, Tokens: tokens, Heads: heads, Dim: dim,
		Words:  make([]uint32, rows*dim/f.PerWord()),
		Scales: make([]uint16, rows*f.Groups(dim)),
	}
}

// Quantize quantizes x, token-major [tokens][heads][dim] as attention's K, V and Q are, into a
// Tensor of format f: per group, scale = f.GroupScale(group) and each element the code nearest
// to x/scale, clamped (see the package documentation). A group that holds a NaN or an infinity
// gets NaNScale and zero codes, so all of it dequantizes to NaN.
func Quantize(f Format, x []float32, tokens, heads, dim int) (*Tensor, error) {
	if err := checkShape(f, len(x), tokens, heads, dim); err != nil {
		return nil, err
	}
	t := newTensor(f, tokens, heads, dim)
	gs, per, bits := f.GroupSize(dim), f.PerWord(), f.Bits()
	for g := range t.Scales {
		xs := x[g*gs : (g+1)*gs]
		sb := f.GroupScale(xs)
		t.Scales[g] = sb
		s := BF16Value(sb)
		if s == 0 || sb == NaNScale {
			continue // codes stay 0
		}
		for i, v := range xs {
			c := g*gs + i
			t.Words[c/per] |= uint32(f.field(v, s)) << (bits * (c % per))
		}
	}
	return t, nil
}

// field is the stored field of element x in a group of scale s (nonzero and finite, negative
// only for Int4; x finite).
func (f Format) field(x, s float32) uint8 {
	if f == E4M3 {
		return encodeE4M3(float64(x) / float64(s))
	}
	lo, hi := -127.0, 127.0
	if f == Int4 {
		lo, hi = -8, 7
	}
	q := math.Max(lo, math.Min(hi, roundQuotient(x, s)))
	return uint8(int8(q)) & uint8(1<<f.Bits()-1)
}

// roundQuotient is the integer nearest to the exact quotient x/s of two finite float32 values
// (s nonzero), ties to even. The float64 quotient is rounded, but it cannot reach or cross a
// rounding boundary (n + 1/2, or an E4M3 midpoint) that the exact quotient does not: x - m·s
// for a boundary m with few significant bits is either 0 or at least a float32 ulp of x, far
// more than float64's relative error of 2^-53.
func roundQuotient(x, s float32) float64 { return math.RoundToEven(float64(x) / float64(s)) }

// Pack builds a Tensor from fields ([tokens][heads][dim] values of Bits bits each, as
// Unpack returns them) and scales ([tokens][heads][Groups] bf16 bits).
func Pack(f Format, fields []uint8, scales []uint16, tokens, heads, dim int) (*Tensor, error) {
	if err := checkShape(f, len(fields), tokens, heads, dim); err != nil {
		return nil, err
	}
	t := newTensor(f, tokens, heads, dim)
	if len(scales) != len(t.Scales) {
		return nil, fmt.Errorf("quant: %d scales, want %d", len(scales), len(t.Scales))
	}
	copy(t.Scales, scales)
	per, bits := f.PerWord(), f.Bits()
	for c, v := range fields {
		if v>>bits != 0 {
			return nil, fmt.Errorf("quant: field %d = %#x does not fit %d bits", c, v, bits)
		}
		t.Words[c/per] |= uint32(v) << (bits * (c % per))
	}
	return t, nil
}

// Unpack returns t's fields, [Tokens][Heads][Dim] (each Bits wide, as stored: two's complement
// for the integer formats), and a copy of its scales.
func (t *Tensor) Unpack() (fields []uint8, scales []uint16) {
	per, bits := t.Format.PerWord(), t.Format.Bits()
	fields = make([]uint8, len(t.Words)*per)
	for c := range fields {
		fields[c] = uint8(t.Words[c/per]>>(bits*(c%per))) & uint8(1<<bits-1)
	}
	scales = make([]uint16, len(t.Scales))
	copy(scales, t.Scales)
	return fields, scales
}

// Field is the stored field of element (token, head, channel).
func (t *Tensor) Field(token, head, channel int) uint8 {
	c := (token*t.Heads+head)*t.Dim + channel
	per, bits := t.Format.PerWord(), t.Format.Bits()
	return uint8(t.Words[c/per]>>(bits*(c%per))) & uint8(1<<bits-1)
}

// Scale is the scale of the group holding channel of row (token, head).
func (t *Tensor) Scale(token, head, channel int) float32 {
	g := t.Format.Groups(t.Dim)
	return BF16Value(t.Scales[(token*t.Heads+head)*g+channel/t.Format.GroupSize(t.Dim)])
}

// Dequantize returns t as float32, [Tokens][Heads][Dim]: each element
// Format.Value(field) · scale, exactly as a kernel computes it (the product is exact).
func (t *Tensor) Dequantize() []float32 {
	x := make([]float32, t.Tokens*t.Heads*t.Dim)
	gs := t.Format.GroupSize(t.Dim)
	per, bits := t.Format.PerWord(), t.Format.Bits()
	for c := range x {
		s := BF16Value(t.Scales[c/gs])
		x[c] = t.Format.Value(uint8(t.Words[c/per]>>(bits*(c%per)))&uint8(1<<bits-1)) * s
	}
	return x
}

// WordBytes is Words as little-endian bytes, for upload.
func (t *Tensor) WordBytes() []byte {
	b := make([]byte, 4*len(t.Words))
	for i, w := range t.Words {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	return b
}

// ScaleBytes is Scales as little-endian bytes, padded with a zero scale to a multiple of 4
// bytes, for upload: scale i is the low half of 32-bit word i/2 when i is even, the high half
// when odd.
func (t *Tensor) ScaleBytes() []byte {
	b := make([]byte, 4*((len(t.Scales)+1)/2))
	for i, s := range t.Scales {
		binary.LittleEndian.PutUint16(b[2*i:], s)
	}
	return b
}
