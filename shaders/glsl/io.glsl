// Loads and stores of fp32, fp16 and bf16 tensors held in 32-bit words, so no 16-bit storage
// feature is needed. DTYPE is a specialization constant: the driver folds the branches.
#ifndef IO_GLSL
#define IO_GLSL

const uint DT_F32 = 0u;
const uint DT_F16 = 1u;
const uint DT_BF16 = 2u;

#define DECLARE_LOAD(NAME, BUF)                                                     \
	float NAME(uint e) {                                                            \
		if (DTYPE == DT_F32) return uintBitsToFloat(BUF[e]);                        \
		uint w = BUF[e >> 1] >> (16u * (e & 1u));                                   \
		if (DTYPE == DT_F16) return unpackHalf2x16(w).x;                            \
		return uintBitsToFloat(w << 16);                                            \
	}

// bf16 from fp32, rounding to nearest even; NaN stays NaN.
uint packBF16(float x) {
	uint u = floatBitsToUint(x);
	if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;
	return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

// unpack2 returns the two elements of a 16-bit storage type held in one word, the low one first.
vec2 unpack2(uint w) {
	if (DTYPE == DT_F16) return unpackHalf2x16(w);
	return vec2(uintBitsToFloat(w << 16), uintBitsToFloat(w & 0xffff0000u));
}

// pack2 packs two adjacent elements into one word of the storage type (16-bit types).
uint pack2(float a, float b) {
	if (DTYPE == DT_F16) return packHalf2x16(vec2(a, b));
	return packBF16(a) | (packBF16(b) << 16);
}

#ifdef ELEM_DTYPE
// elemRound rounds x to the nearest ELEM value (elem.glsl), ties to even, and returns it as a
// float, so that converting it to ELEM is exact whatever rounding the driver's conversion uses.
// The bf16 kernels round through it the probabilities that enter P.V (the row sums, for the
// logsumexp, add the unrounded fp32 values) and, at coopmat2, the output (the coopmat tier's
// storeO rounds already); fp16 conversions are left to the driver.
float elemRound(float x) {
#ifdef ELEM_BF16
	return uintBitsToFloat(packBF16(x) << 16);
#else
	return x;
#endif
}
#endif

#endif
