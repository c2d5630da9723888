// Score transform and online-softmax constants shared by the attention kernels.
#ifndef SOFTMAX_GLSL
#define SOFTMAX_GLSL

#define NEG_INF uintBitsToFloat(0xff800000u)

// score applies the optional soft cap to a scaled dot product.
float score(float s) {
	if (pc.softcap <= 0.0) return s;
	// tanh saturates long before 15; the clamp keeps drivers that compute it from exponentials
	// finite, and NaN stays NaN.
	float t = s / pc.softcap;
	return pc.softcap * tanh(isnan(t) ? t : clamp(t, -15.0, 15.0));
}

// rescale is exp(mOld - mNew) for the running max, 0 when nothing was seen before.
float rescale(float mOld, float mNew) {
	return mOld == NEG_INF ? 0.0 : exp(mOld - mNew);
}

// raiseMax moves a row's running max m to include a tile whose scores peak at tileMax (NaN if
// any score is NaN, so NaN stays in its row) and returns the factor exp(old - new) that rescales
// what was accumulated against the old max: 1 while the row has seen nothing.
float raiseMax(inout float m, float tileMax, bool nan) {
	float mNew = nan ? uintBitsToFloat(0x7fc00000u) : max(m, tileMax);
	if (mNew == NEG_INF) return 1.0;
	float alpha = rescale(m, mNew);
	m = mNew;
	return alpha;
}

// SLACK bounds the exponentials of the matrix tiers: a row's max moves only when a score exceeds
// it by more than SLACK, so probabilities stay below e^8 < 65504 (fp16 holds them) and O needs
// rescaling only on the few tiles where some row's max moves.
const float SLACK = 8.0;

// raiseMaxLazily is raiseMax with SLACK: m moves to tileMax (NaN if any score is NaN) only when
// tileMax exceeds it by more than SLACK, and the factor that rescales what was accumulated is 1
// otherwise, and while the row has seen nothing (O and l are still 0).
float raiseMaxLazily(inout float m, float tileMax, bool nan) {
	if (!nan && !(tileMax > m + SLACK)) return 1.0;
	float mNew = nan ? uintBitsToFloat(0x7fc00000u) : tileMax;
	float alpha = m == NEG_INF ? 1.0 : exp(m - mNew);
	m = mNew;
	return alpha;
}

// prob is exp(x - m), 0 while the row's max m is -inf (nothing visible yet).
float prob(float x, float m) {
	return m == NEG_INF ? 0.0 : exp(x - m);
}

// maxNaN is max(a, b), NaN when either is (GLSL's max leaves NaN undefined): a NaN score stays in
// its row.
float maxNaN(float a, float b) {
	return isnan(a) || isnan(b) ? a + b : max(a, b);
}

// weigh is p * v for a probability p, but 0 when p is 0: a key a row does not see (or that its
// softmax rounds to 0) adds nothing, even when its value is NaN or Inf.
float weigh(float p, float v) { return p == 0.0 ? 0.0 : p * v; }
vec2 weigh(float p, vec2 v) { return p == 0.0 ? vec2(0.0) : p * v; }

// mergeStats folds the softmax statistics (m2, l2) -- running max and sum of exp(s - max) over
// some scores -- into (m, l). A single score x is (x, 1).
void mergeStats(inout float m, inout float l, float m2, float l2) {
	float mNew = maxNaN(m, m2);
	if (mNew == NEG_INF) return; // nothing seen on either side
	l = l * rescale(m, mNew) + l2 * rescale(m2, mNew);
	m = mNew;
}

#endif
