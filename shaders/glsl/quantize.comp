#version 460
// Quantizer: Engine.Quantize. Quantizes a float tensor x, [rows][D] with row = token * heads +
// head, into package quant's formats (Int8, Int4, E4M3; FMT), bit for bit as quant.Quantize
// does: package quant's documentation specifies every step in float32 for this kernel.
//
// Per group of GS channels (quant.Format.GroupSize): absmax is the largest magnitude, found on
// the bits (for non-NaN floats |x| orders as its bits without the sign, and every NaN's bits
// are above +Inf's), so a NaN or an infinity is seen whatever the driver's float compare does;
// scale = bf16(absmax * R), one float32 multiplication rounded by io.glsl's packBF16; 0 below
// quant.MinScale, NaN (0x7fc0) where the group holds a NaN or Inf, with all its codes 0; for
// Int4 the sign bit set where an element equals +absmax. Each element is the code nearest to
// the exact quotient x / scale, ties to even: Vulkan's division may be off by 2.5 ulp, so the
// rounded quotient is moved by one code where x lies beyond the midpoint to its neighbour
// (the midpoints times the scale are exact in float32), then clamped.
//
// x is DTYPE (io.glsl) at binding 0, row (t, h) from element off + t * tokenStride +
// h * headStride (push constants). Outputs, contiguous from words wordsOff and scalesOff: the
// codes (quant.Tensor.Words) at binding 1, row r's word w at r * D / PER + w, channel c in bits
// BITS * (c % PER) of word c / PER; the bf16 scales (quant.Tensor.Scales) at binding 2, group g
// (of all rows, in order) in half g % 2 of word g / 2 (the low half first); where their count is
// odd, the high half of the last word is left as it was (it may be another tensor's).
//
// With SCALED, x is first multiplied, element by element, by the f32 multipliers at binding 3,
// [heads][D] from word scaleOff (RoPE-aware key scaling: quant.KeyScales.K): channel c of head h
// by word scaleOff + h * D + c, one float32 multiplication (precise: never fused), so the group
// quantized is quant.KeyScales.ScaleKeys's, bit for bit. Without it binding 3 is never read.
//
// Two scales share a word, so invocation i owns scale word i: it quantizes groups 2i and
// 2i + 1 and writes their scales and every word of their codes (a group's words are its own:
// GS is a multiple of PER). No two invocations write the same word. Grid: x workgroups of WG
// invocations, looped over the scale words strided by the grid, so any width works.

#extension GL_GOOGLE_include_directive : require

layout(constant_id = 0) const uint DTYPE = 0; // x's storage type
layout(constant_id = 1) const uint D = 128;   // channels per row, a multiple of PER
layout(constant_id = 2) const uint WG = 64;   // invocations per workgroup
layout(constant_id = 3) const uint FMT = 1;   // quant.Format: FMT_INT8, FMT_INT4 or FMT_E4M3
layout(constant_id = 4) const uint GS = 128;  // channels per group, dividing D
layout(constant_id = 5) const bool SCALED = false; // x multiplied by the multipliers at binding 3

layout(local_size_x_id = 2) in;

#include "io.glsl"
#include "e4m3.glsl"

const uint FMT_INT8 = 1u;
const uint FMT_INT4 = 2u;
const uint FMT_E4M3 = 3u;

const uint BITS = FMT == FMT_INT4 ? 4u : 8u;
const uint PER = 32u / BITS;  // codes per word
const uint GROUPS = D / GS;   // groups per row

layout(std430, binding = 0) readonly buffer X { uint xData[]; };
layout(std430, binding = 1) writeonly buffer Words { uint words[]; };
layout(std430, binding = 2) buffer Scales { uint scales[]; }; // read where a word is half ours
layout(std430, binding = 3) readonly buffer Mul { float mul[]; }; // SCALED's multipliers

layout(push_constant) uniform Params {
	uint nGroups; // rows * GROUPS
	uint heads;
	uint tokenStride, headStride, off; // x's, in elements
	uint wordsOff;  // first word of the codes
	uint scalesOff; // first word of the scales
	uint scaleOff;  // first word of the multipliers (SCALED)
} pc;

// halfBitsToFloat is fp16 bits h as float32, exactly, decoded from the bits: subnormals survive
// whatever the driver's unpackHalf2x16 does with them (Vulkan lets it flush them).
float halfBitsToFloat(uint h) {
	uint sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
	if (e == 0u) return uintBitsToFloat(floatBitsToUint(float(m) * uintBitsToFloat(0x33800000u)) | sign); // m * 2^-24
	if (e == 31u) return uintBitsToFloat(sign | 0x7f800000u | (m << 13));
	return uintBitsToFloat(sign | ((e + 112u) << 23) | (m << 13));
}

// loadX is element e of x as float32, exactly.
float loadX(uint e) {
	if (DTYPE == DT_F32) return uintBitsToFloat(xData[e]);
	uint w = xData[e >> 1] >> (16u * (e & 1u));
	if (DTYPE == DT_F16) return halfBitsToFloat(w & 0xffffu);
	return uintBitsToFloat(w << 16);
}

// loadGroup is element c of the group at element base of x, whose multipliers (SCALED) start at
// word m: x's value, times the multiplier with SCALED (one float32 multiplication).
float loadGroup(uint base, uint m, uint c) {
	precise float v = loadX(base + c);
	if (SCALED) v = v * mul[m + c];
	return v;
}

// Reciprocal constants (quant's inv127, inv8, inv448), MinScale 2^-100 and NaNScale.
const float R_INT8 = uintBitsToFloat(0x3c010204u);
const float R_INT4 = uintBitsToFloat(0x3e000000u);
const float R_E4M3 = uintBitsToFloat(0x3b124925u);
const float MIN_SCALE = uintBitsToFloat(0x0d800000u);
const uint NAN_SCALE = 0x7fc0u;

// nearestInt is the integer nearest to the exact quotient x / s (s > 0, both finite), ties to
// even, clamped to lo..hi: package quant's procedure.
float nearestInt(float x, float s, float lo, float hi) {
	float n = roundEven(x / s); // may be one off near a midpoint
	float below = (n - 0.5) * s, above = (n + 0.5) * s; // exact: 9 + 8 significant bits
	bool odd = (int(n) & 1) != 0;
	if (x > above || (x == above && odd))
		n += 1.0;
	else if (x < below || (x == below && odd))
		n -= 1.0;
	return clamp(n, lo, hi);
}

// nearestE4M3 is the E4M3 code (no sign) nearest to the exact quotient a / s (a >= 0, s > 0,
// both finite), ties to the even code, saturating at 126 (448).
uint nearestE4M3(float a, float s) {
	uint c = e4m3Magnitude(a / s); // may be one code off near a midpoint
	float v = e4m3Value(c);
	if (c < 126u) {
		float above = (v + e4m3Value(c + 1u)) * 0.5 * s; // exact: 5 + 8 significant bits
		if (a > above || (a == above && (c & 1u) != 0u)) return c + 1u;
	}
	if (c > 0u) {
		float below = (e4m3Value(c - 1u) + v) * 0.5 * s;
		if (a < below || (a == below && (c & 1u) != 0u)) return c - 1u;
	}
	return c;
}

// field is the stored field of element x of a group of scale s (nonzero and finite; negative
// only for Int4).
uint field(float x, float s) {
	if (FMT == FMT_E4M3) {
		uint sign = (floatBitsToUint(x) >> 24) & 0x80u; // -0 keeps its sign, as quant's does
		return sign | nearestE4M3(abs(x), s);
	}
	if (s < 0.0) { // Int4's negative scale: the nearest code to -x / |s|
		x = -x;
		s = -s;
	}
	float n = FMT == FMT_INT4 ? nearestInt(x, s, -8.0, 7.0) : nearestInt(x, s, -127.0, 127.0);
	return uint(int(n)) & ((1u << BITS) - 1u);
}

// quantizeGroup quantizes group g (of all rows) into its words and returns its scale's bf16 bits.
uint quantizeGroup(uint g) {
	uint row = g / GROUPS, first = (g % GROUPS) * GS;
	uint base = pc.off + (row / pc.heads) * pc.tokenStride + (row % pc.heads) * pc.headStride + first;
	uint m = pc.scaleOff + (row % pc.heads) * D + first; // the group's multipliers (SCALED)
	uint top = 0u; // absmax's bits
	for (uint c = 0u; c < GS; c++) top = max(top, floatBitsToUint(loadGroup(base, m, c)) & 0x7fffffffu);
	uint sb;
	if (top >= 0x7f800000u) {
		sb = NAN_SCALE;
	} else {
		float r = FMT == FMT_INT4 ? R_INT4 : (FMT == FMT_E4M3 ? R_E4M3 : R_INT8);
		sb = packBF16(uintBitsToFloat(top) * r);
		if (uintBitsToFloat(sb << 16) < MIN_SCALE) sb = 0u;
	}
	bool zero = sb == 0u || sb == NAN_SCALE;
	if (FMT == FMT_INT4 && !zero) {
		for (uint c = 0u; c < GS; c++) {
			if (floatBitsToUint(loadGroup(base, m, c)) == top) { // +absmax
				sb |= 0x8000u;
				break;
			}
		}
	}
	float s = uintBitsToFloat(sb << 16);
	uint w0 = pc.wordsOff + (row * D + first) / PER;
	for (uint w = 0u; w < GS / PER; w++) {
		uint word = 0u;
		if (!zero) {
			for (uint i = 0u; i < PER; i++) word |= field(loadGroup(base, m, w * PER + i), s) << (BITS * i);
		}
		words[w0 + w] = word;
	}
	return sb;
}

void main() {
	uint n = (pc.nGroups + 1u) / 2u; // scale words
	uint stride = gl_NumWorkGroups.x * WG;
	for (uint i = gl_WorkGroupID.x * WG + gl_LocalInvocationIndex; i < n; i += stride) {
		uint lo = quantizeGroup(2u * i);
		if (2u * i + 1u < pc.nGroups) {
			scales[pc.scalesOff + i] = lo | (quantizeGroup(2u * i + 1u) << 16);
		} else { // the last of an odd count: the word's high half is not ours (one invocation owns the word)
			scales[pc.scalesOff + i] = (scales[pc.scalesOff + i] & 0xffff0000u) | lo;
		}
	}
}
