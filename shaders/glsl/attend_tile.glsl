// K/V tiles of the scalar and subgroup tiers (attend_scalar.glsl, attend_subgroup.glsl), shared by
// flash_fwd.comp and decode.comp. The including kernel declares D, BC and WG and a struct Block
// with fields s (Seq), kvh (kv head) and kEnd (keys from kEnd on stage as zero). Under KV_QUANT
// (decode.comp) K and V are quant.glsl's codes, dequantized as they are staged.
#ifndef ATTEND_TILE_GLSL
#define ATTEND_TILE_GLSL

// K and V tiles; K rows padded by one float so lanes reading different keys miss bank conflicts.
const uint KS = D + 1;
shared float kTile[BC * KS];
shared float vTile[BC * D];

// loadTile stages keys [k0, k0 + BC) of the block's kv head into shared memory, zero from kEnd.
#ifndef KV_QUANT
void loadTile(Block k, int k0) {
	for (uint idx = gl_LocalInvocationIndex; idx < BC * D; idx += WG) {
		uint j = idx / D, d = idx % D;
		int key = k0 + int(j);
		float kv = 0.0, vv = 0.0;
		if (key < k.kEnd) {
			uint t = k.s.kStart + uint(key);
			kv = kAt(t, k.kvh, d);
			vv = vAt(t, k.kvh, d);
		}
		kTile[j * KS + d] = kv;
		vTile[j * D + d] = vv;
	}
}
#else
// Quantized: an invocation reads a word of K and of V and their groups' scales, and stages the
// PER values each holds.
void loadTile(Block k, int k0) {
	ScaleLayout ks = kvScaleLayout(SEQ_KSCALE, k.s, gl_WorkGroupID.z);
	ScaleLayout vs = kvScaleLayout(SEQ_VSCALE, k.s, gl_WorkGroupID.z);
	for (uint idx = gl_LocalInvocationIndex; idx < BC * WORDS; idx += WG) {
		uint j = idx / WORDS, w = idx % WORDS, d0 = w * PER;
		int key = k0 + int(j);
		uint kw = 0u, vw = 0u;
		float kS = 0.0, vS = 0.0;
		if (key < k.kEnd) {
			uint t = k.s.kStart + uint(key), g = d0 / GS;
			kw = kData[kRow(t, k.kvh) + w];
			vw = vData[vRow(t, k.kvh) + w];
			kS = kScale(ks, t, k.kvh, g);
			vS = vScale(vs, t, k.kvh, g);
		}
		for (uint i = 0; i < PER; i++) {
			kTile[j * KS + d0 + i] = kvValue(kw, i) * kS;
			vTile[j * D + d0 + i] = kvValue(vw, i) * vS;
		}
	}
}
#endif

#endif
