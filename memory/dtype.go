// Package memory allocates device memory in large blocks and hands out tensors: typed, shaped,
// strided views of buffers that are sub-allocated from those blocks, with Upload and Download
// through a reused staging buffer.
package memory

import (
	"fmt"
	"math"
)

// DType is a tensor's element type in storage.
type DType int

// Storage types. Accumulation is always fp32.
const (
	F32 DType = iota
	F16
	BF16
)

// Size is the element size in bytes.
func (t DType) Size() int {
	if t == F32 {
		return 4
	}
	return 2
}

func (t DType) String() string {
	switch t {
	case F32:
		return "f32"
	case F16:
		return "f16"
	case BF16:
		return "bf16"
	}
	return fmt.Sprintf("dtype(%d)", int(t))
}

// ParseDType parses "f32", "f16" or "bf16" (also "fp32", "float16", ...).
func ParseDType(s string) (DType, error) {
	switch s {
	case "f32", "fp32", "float32":
		return F32, nil
	case "f16", "fp16", "float16", "half":
		return F16, nil
	case "bf16", "bfloat16":
		return BF16, nil
	}
	return 0, fmt.Errorf("memory: unknown dtype %q (want f32, f16 or bf16)", s)
}

// Float16Bits rounds x to the nearest IEEE half (ties to even), keeping Inf and NaN.
func Float16Bits(x float32) uint16 {
	b := math.Float32bits(x)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127 + 15
	man := b & 0x7fffff
	switch {
	case b&0x7fffffff > 0x7f800000: // NaN
		return sign | 0x7e00
	case b&0x7fffffff == 0x7f800000:
		return sign | 0x7c00
	case exp >= 31:
		return sign | 0x7c00
	case exp <= 0:
		if exp < -10 {
			return sign
		}
		man |= 0x800000
		shift := uint(14 - exp)
		h := man >> shift
		rem := man & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(exp)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // may carry into the exponent, and to Inf: both correct
	}
	return sign | uint16(h)
}

// Float16From converts IEEE half bits to float32 exactly.
func Float16From(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h >> 10 & 0x1f)
	man := uint32(h & 0x3ff)
	switch exp {
	case 0:
		return math.Float32frombits(sign) + float32(man)*float32(math.Ldexp(1, -24))*sign1(sign)
	case 31:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
}

func sign1(sign uint32) float32 {
	if sign != 0 {
		return -1
	}
	return 1
}

// BFloat16Bits rounds x to the nearest bfloat16 (ties to even), keeping Inf and NaN.
func BFloat16Bits(x float32) uint16 {
	b := math.Float32bits(x)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b >> 16 & 1)) >> 16)
}

// BFloat16From converts bfloat16 bits to float32 exactly.
func BFloat16From(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Round returns x as stored in dtype t and read back.
func (t DType) Round(x float32) float32 {
	switch t {
	case F16:
		return Float16From(Float16Bits(x))
	case BF16:
		return BFloat16From(BFloat16Bits(x))
	}
	return x
}
