// Package quant defines the quantized formats of keys, values and queries that vkattn's
// quantized kernels read, and bit-faithful CPU emulators of their quantizers that those kernels
// are tested against: INT8 and INT4 K/V with per-token scales, FireQ's RoPE-aware key scaling,
// and FP8 E4M3 queries (emulated: the H100's Vulkan driver has no float8 type). It is pure Go.
//
// # Formats
//
// A tensor is token-major, [tokens][heads][dim], as attention's q, k and v are. Each (token,
// head) row is split into groups of Format.GroupSize channels, each with one scale:
//
//	format  element                              range      scale            groups per row
//	Int8    two's complement byte                -127..127  absmax/127       1
//	Int4    two's complement nibble              -8..7      ±absmax/8 (*)    dim/128, or 1 (**)
//	E4M3    FP8 E4M3 byte (OCP "fn", max 448)    ±448       absmax/448       1
//
// (*) Int4's scale is negative when +absmax is in the group, so that the element of largest
// magnitude maps to -8 whatever its sign and all 16 codes are used: one step is absmax/8, not
// FireQ's absmax/7 with codes -7..7, which wastes -8. That cuts the squared rounding error by
// 23% ((7/8)^2), and attention over INT4 K and V on Gaussian data goes from cosine 0.986 to
// 0.989 (d = 128). Where a group holds both +absmax and -absmax, -absmax maps to 7, an error
// of one step.
//
// (**) 128-channel groups as FireQ uses, where dim is a multiple of 128 (128, 256); a head dim
// that is not (32, 64, 80, 96, 192) is one group.
//
// Memory, as Tensor holds it and the kernels read it:
//
//	words   [tokens][heads][dim/PerWord] uint32   PerWord = 4 (Int8, E4M3) or 8 (Int4)
//	scales  [tokens][heads][groups]      bf16     2 per uint32 word, the lower index in the low half
//
// Channel c of a row is in word c/PerWord at bits Bits·(c%PerWord) (the first channel in the
// least significant bits), so a kernel reads it with bitfieldExtract(int(word), 4*i, 4) for Int4
// and bitfieldExtract(int(word), 8*i, 8) for Int8 (both sign-extend), and an E4M3 code with
// bitfieldExtract(word, 8*i, 8). Scales are bf16, as FireQ may store them: half the size of float32, float32's range (fp16 would make the scales of small
// values subnormal), and a significand of 8 bits, which keeps every product of a code and a
// scale exact (below). The kernel reads uintBitsToFloat(half << 16).
//
// # Arithmetic
//
// Every step is specified in float32 so that a GLSL kernel can match it bit for bit:
//
//   - absmax = max |x| over the group (exact); NaN if the group holds a NaN. GLSL's max does not
//     promise to propagate NaN: test isnan.
//   - scale = bf16(absmax * R), R = float32(1/127), 1/8 or float32(1/448) (bits 0x3c010204,
//     0x3e000000, 0x3b124925): one float32 multiplication, then rounding to bf16, nearest even
//     (io.glsl's packBF16). No division. For Int4, the sign bit of the bf16 scale is then set
//     if some element equals +absmax (and the scale is neither 0 nor NaN). If absmax is NaN or
//     Inf, the scale is NaN (0x7fc0) and every element 0, so the whole group dequantizes to
//     NaN: a non-finite input poisons its own (token, head, group) and nothing else, as NaN
//     stays in its row elsewhere in vkattn. A scale below MinScale (2^-100) is stored as 0 with
//     every element 0, so a zero group dequantizes to +0.
//   - element: the code nearest to the exact quotient x/scale (for Int4's negative scales, of
//     -x/|scale|: the same), ties to even (the even integer; the E4M3 code with an even
//     mantissa), then clamped (Int8 to ±127, Int4 to -8..7, E4M3 saturating to ±448).
//   - dequantized value = value(code) * scale, one float32 multiplication, and exact: codes have
//     at most 8 significant bits and scales 8, so the product fits float32's 24 (it overflows to
//     ±Inf only for a group whose absmax is within 2^-8 of float32's largest value, where the
//     scale rounded up). Code 0 under a negative scale gives -0.
//
// Vulkan lets division be off by 2.5 ulp, so a kernel cannot compute x/scale itself; it finds the
// nearest code exactly like this, with x and s negated first where an Int4 scale is negative
// (tested against the definition, with a division off by several ulps):
//
//	float n = roundEven(x / s);                // may be one off near a midpoint
//	float lo = (n - 0.5) * s, hi = (n + 0.5) * s; // exact: 9 + 8 significant bits
//	bool odd = (int(n) & 1) != 0;
//	if (x > hi || (x == hi && odd)) n += 1.0;
//	else if (x < lo || (x == lo && odd)) n -= 1.0;
//	n = clamp(n, -127.0, 127.0);               // -8.0, 7.0 for Int4
//
// and for E4M3, on magnitudes: c = the E4M3 code of |x|/s (its own rounding of the float32
// quotient), then the midpoints (value(c) + value(c±1))/2 · s, exact, move c one code up or down
// by the same rule (a tie goes to the even code; code 126, 448, never moves up).
//
// # RoPE-aware key scaling
//
// FireQ equalizes the channels of the keys before INT4 quantization: CalibrateKeys fits, per KV
// head and channel, a scale from sample keys (pre-RoPE scales on channel pairs and post-RoPE
// scales on the top-k outlier channels, see CalibrateKeys); keys are multiplied by KeyScales.K
// before they are quantized, queries by KeyScales.Q = 1/K, so scores are unchanged but for
// rounding. Both are float32 multiplications a kernel repeats exactly.
//
// # References
//
// Attention computes, in float64, attention over dequantized K and V (and optionally FP8 queries)
// through the oracle attention/reference: the tier-1 reference a quantized kernel must match
// tightly. CosineSimilarity and RelativeL1 measure a result against the float64 reference over
// unquantized inputs.
package quant
