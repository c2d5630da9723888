package quant

import (
	"fmt"
	"math"
)

// Format is the element format of a quantized tensor.
type Format uint8

// Formats.
const (
	// Int8 is symmetric 8-bit integers -127..127 (two's complement bytes), one scale per
	// (token, head): scale = absmax/127.
	Int8 Format = iota + 1
	// Int4 is 4-bit integers -8..7 (two's complement nibbles), one signed scale per (token,
	// head, group of GroupSize channels): |scale| = absmax/8, negative when +absmax is in the
	// group, so that the element of largest magnitude maps to -8 and all 16 codes are used.
	Int4
	// E4M3 is FP8 E4M3 (OCP "fn": no infinities, NaN 0x7f/0xff, largest finite 448), one
	// scale per (token, head): scale = absmax/448. Used for queries.
	E4M3
)

func (f Format) String() string {
	switch f {
	case Int8:
		return "int8"
	case Int4:
		return "int4"
	case E4M3:
		return "e4m3"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// Bits is the width of one element's field in a packed word: 8 or 4.
func (f Format) Bits() int {
	if f == Int4 {
		return 4
	}
	return 8
}

// PerWord is the number of elements packed in one uint32 word: 4 or 8.
func (f Format) PerWord() int { return 32 / f.Bits() }

// Max is the magnitude of the value the quantizer maps a group's absmax to: 127, 8 (Int4's
// -8) or 448.
func (f Format) Max() float32 {
	switch f {
	case Int4:
		return 8
	case E4M3:
		return 448
	}
	return 127
}

// GroupSize is the number of channels that share one scale in a head of dim channels: the whole
// head for Int8 and E4M3; for Int4 128 channels where dim is a multiple of 128, else the whole
// head (dims 32, 64, 80, 96, 192 have one group).
func (f Format) GroupSize(dim int) int {
	if f == Int4 && dim%128 == 0 {
		return 128
	}
	return dim
}

// Groups is the number of scales per (token, head): dim / GroupSize(dim).
func (f Format) Groups(dim int) int { return dim / f.GroupSize(dim) }

// Check reports whether f is a format and dim a head dim it can pack (a positive multiple of
// PerWord).
func (f Format) Check(dim int) error {
	if f != Int8 && f != Int4 && f != E4M3 {
		return fmt.Errorf("quant: unknown format %d", uint8(f))
	}
	if dim <= 0 || dim%f.PerWord() != 0 {
		return fmt.Errorf("quant: %v needs a head dim that is a positive multiple of %d, got %d", f, f.PerWord(), dim)
	}
	return nil
}

// Value is the number an element's field (its 4 or 8 bits, as stored) stands for before scaling:
// the sign-extended integer for Int8 and Int4, the FP8 value for E4M3.
func (f Format) Value(field uint8) float32 {
	switch f {
	case Int4:
		return float32(int8(field<<4) >> 4)
	case E4M3:
		return DecodeE4M3(field)
	}
	return float32(int8(field))
}

// Reciprocal constants multiplied by a group's absmax to get its scale (one float32
// multiplication, correctly rounded, then rounded to bf16). Their bits, for kernels:
// 1/127 = 0x3c010204, 1/8 = 0x3e000000 (exact), 1/448 = 0x3b124925.
const (
	inv127 float32 = 1.0 / 127
	inv8   float32 = 1.0 / 8
	inv448 float32 = 1.0 / 448
)

func (f Format) inverse() float32 {
	switch f {
	case Int4:
		return inv8
	case E4M3:
		return inv448
	}
	return inv127
}

// MinScale is the smallest scale stored: a group whose scale would round below it (for Int8,
// absmax below about 1e-28) is stored with scale 0 and all elements 0. It keeps every product a kernel
// forms from a scale (code ± 1/2 times scale) a normal float32, so flushing denormals changes
// nothing.
const MinScale = 0x1p-100

// NaNScale is the bf16 bits of the scale of a group that holds a NaN or an infinity.
const NaNScale uint16 = 0x7fc0

// ScaleBits returns the magnitude of the scale, as bf16 bits, of a group whose largest
// magnitude is absmax: bf16(absmax * float32(1/Max)), the product rounded to float32 and then
// to bf16, each to nearest even; 0 below MinScale; NaNScale where absmax is NaN or +Inf.
// GroupScale adds Int4's sign.
func (f Format) ScaleBits(absmax float32) uint16 {
	if math.IsNaN(float64(absmax)) || math.IsInf(float64(absmax), 0) {
		return NaNScale
	}
	b := BF16Bits(absmax * f.inverse())
	if BF16Value(b) < MinScale {
		return 0
	}
	return b
}

// GroupScale returns the scale, as bf16 bits, that Quantize gives a group x of format f:
// ScaleBits(absmax); for Int4 negated (the sign bit set) when +absmax is in the group and the
// scale is neither 0 nor NaN, so that the element of largest magnitude maps to -8 (with both
// +absmax and -absmax in the group, -absmax maps to 7, one step from its value).
func (f Format) GroupScale(x []float32) uint16 {
	a := absmax(x)
	b := f.ScaleBits(a)
	if f != Int4 || b == 0 || b == NaNScale {
		return b
	}
	for _, v := range x {
		if v == a {
			return b | 0x8000
		}
	}
	return b
}

// BF16Bits rounds x to the nearest bfloat16, ties to even; NaN becomes 0x7fc0 (as io.glsl's
// packBF16 does).
func BF16Bits(x float32) uint16 {
	u := math.Float32bits(x)
	if u&0x7fffffff > 0x7f800000 {
		return 0x7fc0
	}
	return uint16((u + 0x7fff + (u >> 16 & 1)) >> 16)
}

// BF16Value is bfloat16 bits as float32, exactly.
func BF16Value(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// absmax is the largest magnitude in x, NaN if x holds a NaN.
func absmax(x []float32) float32 {
	var m float32
	for _, v := range x {
		if v != v {
			return v
		}
		if v < 0 {
			v = -v
		}
		if v > m {
			m = v
		}
	}
	return m
}
