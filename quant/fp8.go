package quant

import "math"

// E4M3Max is the largest finite FP8 E4M3 value.
const E4M3Max = 448

// E4M3NaN is the positive E4M3 NaN code (0xff is the negative one).
const E4M3NaN uint8 = 0x7f

// EncodeE4M3 rounds x to the nearest FP8 E4M3 value, ties to even, and returns its code
// (sign bit 7, exponent bits 6..3 with bias 7, mantissa bits 2..0; exponent 0 is subnormal,
// m·2^-9). Magnitudes beyond 448, infinities included, saturate to ±448 (0x7e, 0xfe); NaN gives
// 0x7f with x's sign bit. -0 gives 0x80.
func EncodeE4M3(x float32) uint8 { return encodeE4M3(float64(x)) }

// encodeE4M3 is EncodeE4M3 of a float64. It rounds v itself, so it is exact for any v; for the
// quotient of two float32 values rounded to float64 it gives the code of the exact quotient (the
// float64 rounding can neither cross nor land on an E4M3 rounding boundary; see roundQuotient).
func encodeE4M3(v float64) uint8 {
	var sign uint8
	if math.Signbit(v) {
		sign, v = 0x80, -v
	}
	if math.IsNaN(v) {
		return sign | E4M3NaN
	}
	if v >= E4M3Max { // 448 itself, every value that would round above it, and +Inf
		return sign | 0x7e
	}
	quantum := 0x1p-9 // the subnormal spacing, also that of the first normal binade [2^-6, 2^-5)
	if v >= 0x1p-6 {
		_, exp := math.Frexp(v) // v = f·2^exp, f in [0.5, 1): the binade is [2^(exp-1), 2^exp)
		quantum = math.Ldexp(1, exp-1-3)
	}
	r := math.RoundToEven(v/quantum) * quantum // exact: scaling by powers of two
	if r < 0x1p-6 {
		// Subnormal codes are m·2^-9 for m = 0..7, and code 8 is 2^-6, the first normal: the
		// positive codes count the grid in order.
		return sign | uint8(r/0x1p-9)
	}
	_, exp := math.Frexp(r)
	e := exp - 1 // r = (1 + m/8)·2^e
	m := uint8(math.Ldexp(r, 3-e)) - 8
	return sign | uint8(e+7)<<3 | m
}

// DecodeE4M3 is the value of an FP8 E4M3 code, exactly; 0x7f and 0xff are NaN.
func DecodeE4M3(c uint8) float32 {
	e, m := int(c>>3&15), float32(c&7)
	var v float32
	switch {
	case e == 15 && m == 7:
		v = float32(math.NaN())
	case e == 0:
		v = m * 0x1p-9
	default:
		v = float32(math.Ldexp(float64(8+m), e-10))
	}
	if c&0x80 != 0 {
		return -v
	}
	return v
}
