#version 460
// Split-KV decoding ("flash-decoding"): a few new query tokens per sequence against its keys,
// which are split into chunks; a workgroup computes one chunk of one KV head for up to BR rows
// with the forward kernels' online softmax and writes a partial output and logsumexp, and
// merge.comp combines the chunks' partials into the result (Engine.Decode).
//
// Rows: those of (sequence, kv head kvh) are its lq new tokens times the G = hq / hk query heads
// that read kvh, token-major: row r is token r / G of query head kvh * G + r % G. They share the
// K/V tiles that the workgroup stages, so each K/V byte of a chunk is read once when the lq * G
// rows fit one workgroup (BR); more rows take several row blocks, each reading the chunk.
// Masks as the forward's (mask.glsl): causal among the new tokens, bottom-right aligned.
//
// Grid: (chunks, hk * row blocks, sequences). Chunk c of a sequence holds its keys
// [c * CHUNK, (c + 1) * CHUNK), CHUNK being the word after the cumulative lengths in the seqlens
// buffer (index 2 * (nSeq + 1)); a sequence shorter than others has chunks without keys. With
// FLAG_PARTIAL, chunk c's partials go to binding 6 ([chunks][totalQ][hq][D] fp32) and binding 7
// ([chunks][totalQ][hq]): every row writes its logsumexp, -inf where the chunk holds no key it
// sees, and then no output (merge.comp does not read it). Without it (one chunk), results go
// straight to o and lse as the forward's do.
//
// Tiers (one define each):
//   TIER_SCALAR    one invocation per row (BR == WG).
//   TIER_SUBGROUP  a subgroup per ROWS rows: lanes split the keys for Q.K^T and the dim pairs
//                  for P.V, subgroup reductions for the softmax statistics, as flash_fwd's.
// K and V (one define at most):
//   (none)         stored as DTYPE, as q.
//   KV_INT8        quantized, package quant's Int8 (quant.glsl: codes, scales at bindings 8 and
//   KV_INT4        9, queries as QMODE says), dequantized as each K/V tile is staged: the tiles
//                  and everything after them are the float kernel's.

#extension GL_GOOGLE_include_directive : require
#ifdef TIER_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_vote : require
#endif

layout(constant_id = 0) const uint DTYPE = 0;
layout(constant_id = 1) const uint D = 128;   // head dim
layout(constant_id = 2) const uint BR = 32;   // rows per workgroup
layout(constant_id = 3) const uint BC = 32;   // keys per tile
layout(constant_id = 4) const uint WG = 32;   // invocations per workgroup
#ifdef TIER_SUBGROUP
layout(constant_id = 5) const uint SG = 32;   // subgroup size the tile sizes were chosen for
#endif

layout(local_size_x_id = 4) in;

#include "tensors.glsl"
#include "mask.glsl"
#if defined(KV_INT8) || defined(KV_INT4)
#define KV_QUANT
#include "quant.glsl"
#else
float queryAt(uint t, uint h, uint d) { return qAt(t, h, d); }
#endif

const uint FLAG_PARTIAL = 2u;

layout(std430, binding = 6) writeonly buffer PartO { float partO[]; };
layout(std430, binding = 7) writeonly buffer PartLSE { float partLSE[]; };

// K and V tiles; K rows padded by one float against bank conflicts.
const uint KS = D + 1;
shared float kTile[BC * KS];
shared float vTile[BC * D];

// Block is the work of one workgroup.
struct Block {
	Seq s;
	uint split, kvh, g; // chunk, kv head, query heads per kv head
	uint r0, rows;      // the block's first row; rows of (sequence, kv head): lq * g
	int c0, c1;         // the chunk's keys [c0, c1)
	ivec2 keys;         // the keys of the chunk some row of the block sees, [x, y)
};

Block block() {
	Block k;
	k.s = sequence(gl_WorkGroupID.z);
	k.split = gl_WorkGroupID.x;
	k.kvh = gl_WorkGroupID.y % pc.hk;
	k.g = pc.hq / pc.hk;
	k.r0 = gl_WorkGroupID.y / pc.hk * BR;
	k.rows = k.s.lq * k.g;
	int lq = int(k.s.lq), lk = int(k.s.lk);
	int chunk = int(cuSeqlens[2u * (pc.nSeq + 1u)]);
	k.c0 = min(int(k.split) * chunk, lk);
	k.c1 = min(k.c0 + chunk, lk);
	int i0 = int(k.r0 / k.g);
	int i1 = int((max(min(k.r0 + BR, k.rows), 1u) - 1u) / k.g); // last token of the block
	ivec2 vis = blockKeys(i0, i1 - i0 + 1, lq, lk);
	k.keys = ivec2(max(k.c0, vis.x), min(k.c1, vis.y));
	return k;
}

// rowHead is the query head of row r.
uint rowHead(Block k, uint r) { return k.kvh * k.g + r % k.g; }

// rowKeys are the keys of the chunk that token i sees, [x, y).
ivec2 rowKeys(Block k, int i) {
	int lq = int(k.s.lq), lk = int(k.s.lk);
	return ivec2(max(keyLo(i, lq, lk), k.c0), min(keyHi(i, lq, lk), k.c1));
}

// loadTile stages keys [k0, k0 + BC) of the block's kv head into shared memory, zero from kEnd.
#ifndef KV_QUANT
void loadTile(Block k, int k0, int kEnd) {
	for (uint idx = gl_LocalInvocationIndex; idx < BC * D; idx += WG) {
		uint j = idx / D, d = idx % D;
		int key = k0 + int(j);
		float kv = 0.0, vv = 0.0;
		if (key < kEnd) {
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
void loadTile(Block k, int k0, int kEnd) {
	ScaleLayout ks = scaleLayout(SEQ_KSCALE), vs = scaleLayout(SEQ_VSCALE);
	for (uint idx = gl_LocalInvocationIndex; idx < BC * WORDS; idx += WG) {
		uint j = idx / WORDS, w = idx % WORDS, d0 = w * PER;
		int key = k0 + int(j);
		uint kw = 0u, vw = 0u;
		float kS = 0.0, vS = 0.0;
		if (key < kEnd) {
			uint t = k.s.kStart + uint(key), g = d0 / GS;
			kw = kData[pc.kOff + t * pc.kTokenStride + k.kvh * pc.kHeadStride + w];
			vw = vData[pc.vOff + t * pc.vTokenStride + k.kvh * pc.vHeadStride + w];
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

bool partial() { return (pc.flags & FLAG_PARTIAL) != 0u; }

// storeOut writes dims d and d+1 of the result of query token t, head h: to o, or to the chunk's
// partial output.
void storeOut(uint split, uint t, uint h, uint d, float a, float b) {
	if (!partial()) {
		storeO(t, h, d, a, b);
		return;
	}
	uint e = ((split * cuSeqlens[pc.nSeq] + t) * pc.hq + h) * D + d;
	partO[e] = a;
	partO[e + 1u] = b;
}

// storeOutLSE writes the logsumexp of a row with running max m and sum l (-inf where it saw no
// key): to lse, if asked for, or to the chunk's partial logsumexp.
void storeOutLSE(uint split, uint t, uint h, float m, float l) {
	if (!partial()) {
		storeLSE(t, h, m, l);
		return;
	}
	partLSE[(split * cuSeqlens[pc.nSeq] + t) * pc.hq + h] = l == 0.0 ? NEG_INF : m + log(l);
}

// writesO reports whether a row with softmax sum l stores an output: always into o, and into a
// partial only where the chunk held a key it sees.
bool writesO(float l) { return !partial() || l != 0.0; }

#ifdef TIER_SCALAR
void main() {
	Block k = block();
	if (k.r0 >= k.rows) return; // uniform across the workgroup
	uint r = k.r0 + gl_LocalInvocationIndex;
	bool valid = r < k.rows;
	int i = int(r / k.g);
	uint h = rowHead(k, r);
	uint qt = k.s.qStart + uint(i);

	float q[D], o[D];
	for (uint d = 0; d < D; d++) {
		q[d] = valid ? queryAt(qt, h, d) * pc.scale : 0.0;
		o[d] = 0.0;
	}
	ivec2 mine = valid ? rowKeys(k, i) : ivec2(0);
	float m = NEG_INF, l = 0.0;
	for (int k0 = k.keys.x; k0 < k.keys.y; k0 += int(BC)) {
		barrier();
		loadTile(k, k0, k.keys.y);
		barrier();
		float sc[BC];
		float mTile = NEG_INF;
		for (uint j = 0; j < BC; j++) {
			int key = k0 + int(j);
			float x = NEG_INF;
			if (key >= mine.x && key < mine.y) {
				float acc = 0.0;
				for (uint d = 0; d < D; d++) acc += q[d] * kTile[j * KS + d];
				x = score(acc);
			}
			sc[j] = x;
			mTile = maxNaN(mTile, x);
		}
		float alpha = raiseMax(m, mTile, isnan(mTile));
		l *= alpha;
		for (uint d = 0; d < D; d++) o[d] *= alpha;
		for (uint j = 0; j < BC; j++) {
			float p = prob(sc[j], m);
			l += p;
			for (uint d = 0; d < D; d++) o[d] += weigh(p, vTile[j * D + d]);
		}
	}
	if (!valid) return;
	float inv = l == 0.0 ? 0.0 : 1.0 / l;
	if (writesO(l))
		for (uint d = 0; d < D; d += 2) storeOut(k.split, qt, h, d, o[d] * inv, o[d + 1] * inv);
	storeOutLSE(k.split, qt, h, m, l);
}
#endif

#ifdef TIER_SUBGROUP
// The workgroup is WG / SG subgroups; subgroup g owns rows [g*ROWS, (g+1)*ROWS) of the block.
// For Q.K^T lane x scores keys x, x+SG, ... of the tile against the row's q, broadcast from
// shared memory; for P.V lane x owns the dim pairs x, x+SG, ... of the output.
const uint NSG = WG / SG;
const uint ROWS = BR / NSG;
const uint KPL = (BC + SG - 1) / SG;       // keys per lane
const uint PAIRS = D / 2;
const uint PPL = (PAIRS + SG - 1) / SG;    // dim pairs per lane

shared float qTile[BR * D];
shared float pTile[BR * BC];

void main() {
	Block k = block();
	if (k.r0 >= k.rows) return; // uniform across the workgroup
	uint lane = gl_SubgroupInvocationID, sg = gl_SubgroupID;
	// Tile sizes assume SG lanes; a driver that runs another width gets NaN, never a wrong answer.
	bool widthOK = gl_SubgroupSize == SG;

	for (uint idx = gl_LocalInvocationIndex; idx < BR * D; idx += WG) {
		uint r = k.r0 + idx / D;
		float x = 0.0;
		if (r < k.rows) x = queryAt(k.s.qStart + r / k.g, rowHead(k, r), idx % D) * pc.scale;
		qTile[idx] = x;
	}

	float m[ROWS], l[ROWS];
	vec2 o[ROWS][PPL];
	for (uint rr = 0; rr < ROWS; rr++) {
		m[rr] = NEG_INF;
		l[rr] = 0.0;
		for (uint i = 0; i < PPL; i++) o[rr][i] = vec2(0.0);
	}
	for (int k0 = k.keys.x; k0 < k.keys.y; k0 += int(BC)) {
		barrier();
		loadTile(k, k0, k.keys.y);
		barrier();
		for (uint rr = 0; rr < ROWS; rr++) {
			uint rl = sg * ROWS + rr; // row within the block
			if (rl >= BR) break;      // only at a wrong subgroup width (widthOK): stay in bounds
			uint r = k.r0 + rl;
			ivec2 mine = r < k.rows ? rowKeys(k, int(r / k.g)) : ivec2(0);
			float x[KPL];
			float mx = NEG_INF;
			bool nan = false;
			for (uint kk = 0; kk < KPL; kk++) {
				uint j = kk * SG + lane;
				int key = k0 + int(j);
				float v = NEG_INF;
				if (j < BC && key >= mine.x && key < mine.y) {
					float acc = 0.0;
					for (uint d = 0; d < D; d++) acc += qTile[rl * D + d] * kTile[j * KS + d];
					v = score(acc);
				}
				x[kk] = v;
				nan = nan || isnan(v);
				mx = max(mx, v);
			}
			float alpha = raiseMax(m[rr], subgroupMax(mx), subgroupAny(nan)), sum = 0.0;
			for (uint kk = 0; kk < KPL; kk++) {
				uint j = kk * SG + lane;
				float p = prob(x[kk], m[rr]);
				sum += p;
				if (j < BC) pTile[rl * BC + j] = p;
			}
			l[rr] = l[rr] * alpha + subgroupAdd(sum);
			for (uint i = 0; i < PPL; i++) o[rr][i] *= alpha;
		}
		subgroupMemoryBarrierShared();
		subgroupBarrier();
		for (uint j = 0; j < BC; j++) {
			vec2 v[PPL];
			for (uint i = 0; i < PPL; i++) {
				uint pair = lane + i * SG;
				v[i] = pair < PAIRS ? vec2(vTile[j * D + 2 * pair], vTile[j * D + 2 * pair + 1]) : vec2(0.0);
			}
			for (uint rr = 0; rr < ROWS; rr++) {
				float p = sg * ROWS + rr < BR ? pTile[(sg * ROWS + rr) * BC + j] : 0.0;
				for (uint i = 0; i < PPL; i++) o[rr][i] += weigh(p, v[i]);
			}
		}
	}
	for (uint rr = 0; rr < ROWS; rr++) {
		uint rl = sg * ROWS + rr, r = k.r0 + rl;
		if (r >= k.rows || rl >= BR) continue;
		uint qt = k.s.qStart + r / k.g, h = rowHead(k, r);
		float mm = m[rr], ll = l[rr];
		if (!widthOK) mm = ll = uintBitsToFloat(0x7fc00000u);
		float inv = ll == 0.0 ? 0.0 : 1.0 / ll;
		if (writesO(ll)) {
			for (uint i = 0; i < PPL; i++) {
				uint pair = lane + i * SG;
				if (pair < PAIRS) storeOut(k.split, qt, h, 2 * pair, o[rr][i].x * inv, o[rr][i].y * inv);
			}
		}
		if (lane == 0) storeOutLSE(k.split, qt, h, mm, ll);
	}
}
#endif
