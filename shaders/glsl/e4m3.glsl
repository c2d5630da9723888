// FP8 E4M3 (OCP "fn": no infinities, NaN 0x7f/0xff, largest finite 448) codes and values, as
// package quant defines them: sign bit 7, exponent bits 6..3 with bias 7, mantissa bits 2..0;
// exponent 0 is subnormal (m * 2^-9). Pure functions, no bindings.
#ifndef E4M3_GLSL
#define E4M3_GLSL

// e4m3Value is the value of an FP8 E4M3 code, exactly (quant.DecodeE4M3): 0x7f and 0xff are
// NaN, exponent 0 subnormal (m * 2^-9), others (8 + m) * 2^(e - 10).
float e4m3Value(uint c) {
	uint e = (c >> 3) & 15u, m = c & 7u;
	float v;
	if (e == 15u && m == 7u)
		v = uintBitsToFloat(0x7fc00000u);
	else if (e == 0u)
		v = float(m) * uintBitsToFloat(0x3b000000u); // 2^-9
	else
		v = ldexp(float(8u + m), int(e) - 10);
	return (c & 0x80u) != 0u ? -v : v;
}

// e4m3Magnitude is the code (0..126, no sign) of the E4M3 value nearest to v >= 0, ties to the
// even code, saturating to 448 (126): quant.EncodeE4M3 of a non-negative float32. Only powers
// of two scale v, so the rounding is the one roundEven makes, exactly.
uint e4m3Magnitude(float v) {
	if (v >= 448.0) return 126u;
	if (v < uintBitsToFloat(0x3c800000u)) // 2^-6: subnormal codes m * 2^-9, then code 8 = 2^-6
		return uint(roundEven(v * 512.0));
	int e = int(floatBitsToUint(v) >> 23) - 127;               // v in [2^e, 2^(e+1)), e in -6..8
	float r = roundEven(v * uintBitsToFloat(uint(130 - e) << 23)); // v / 2^(e-3), to 8..16
	return uint(e + 7) * 8u + uint(r) - 8u;                    // 16 carries into the next binade
}

#endif
