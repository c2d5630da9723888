// Visibility of keys to queries: causal and sliding-window masks, bottom-right aligned when the
// query and key lengths differ (query i sees keys up to i + lk - lq), as FlashAttention-2 does.
#ifndef MASK_GLSL
#define MASK_GLSL

// keyLo and keyHi bound the keys visible to query i as the half-open range [lo, hi), clamped to
// [0, lk). The range may be empty (lo >= hi).
int keyLo(int i, int lq, int lk) {
	return pc.windowLeft < 0 ? 0 : max(0, i + lk - lq - pc.windowLeft);
}

int keyHi(int i, int lq, int lk) {
	return pc.windowRight < 0 ? lk : min(lk, i + lk - lq + pc.windowRight + 1);
}

// blockKeys bounds the keys any of the query rows [row0, row0 + rows) can see, as [x, y).
ivec2 blockKeys(int row0, int rows, int lq, int lk) {
	return ivec2(keyLo(row0, lq, lk), keyHi(min(row0 + rows, lq) - 1, lq, lk));
}

#endif
