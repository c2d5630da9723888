// Score transform and online-softmax constants shared by the attention kernels.
#ifndef SOFTMAX_GLSL
#define SOFTMAX_GLSL

#define NEG_INF uintBitsToFloat(0xff800000u)

// score applies the optional soft cap to a scaled dot product.
float score(float s) {
	return pc.softcap > 0.0 ? pc.softcap * tanh(s / pc.softcap) : s;
}

// rescale is exp(mOld - mNew) for the running max, 0 when nothing was seen before.
float rescale(float mOld, float mNew) {
	return mOld == NEG_INF ? 0.0 : exp(mOld - mNew);
}

#endif
