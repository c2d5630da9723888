#version 460
// Naive attention, the benchmark baseline: three passes over a materialized fp32 score matrix S,
// as softmax(Q K^T) V is written without fusion.
//
// Passes (one define each), run in this order with barriers between:
//   NAIVE_SCORES   S = score(scale * Q K^T), -inf where masked. T x T tiles of S, Q and K staged
//                  through shared memory T head dims at a time.
//   NAIVE_SOFTMAX  per row of S: max, sum of exp, normalized in place to P; writes the logsumexp.
//                  A workgroup per row; a row that sees no key becomes all zeros (lse -inf).
//   NAIVE_PV       O = P V in q's dtype: a workgroup per T query rows, all head dims; keys run
//                  only over the block's visible range.
//
// S (binding 6) holds, per sequence b and query head h, an lq x lk row-major matrix at float
// offset sOff[b] + h*lq*lk; sOff (nSeq+1 words, sOff[b+1] - sOff[b] = hq*lq*lk) follows the
// cumulative lengths in the seqlens buffer. Grid: (blocks, query heads, sequences); the blocks
// of a (sequence, head) are visited in a loop strided by the grid width, so any width works.

#extension GL_GOOGLE_include_directive : require

layout(constant_id = 0) const uint DTYPE = 0;
layout(constant_id = 1) const uint D = 128;   // head dim, a multiple of T
layout(constant_id = 2) const uint T = 16;    // tile edge
layout(constant_id = 3) const uint WG = 256;  // invocations per workgroup: T*T, a power of two

layout(local_size_x_id = 3) in;

#include "tensors.glsl"
#include "mask.glsl"

layout(std430, binding = 6) buffer Scores { float sData[]; };

// scoresRow is the index in S of row i of sequence b, query head h.
uint scoresRow(Seq s, uint b, uint h, uint i) {
	return cuSeqlens[2u * (pc.nSeq + 1u) + b] + (h * s.lq + i) * s.lk;
}

#ifdef NAIVE_SCORES
// Tiles of T rows by T head dims; rows padded by one float against bank conflicts.
shared float qTile[T * (T + 1)];
shared float kTile[T * (T + 1)];

void main() {
	uint b = gl_WorkGroupID.z, h = gl_WorkGroupID.y;
	Seq s = sequence(b);
	if (s.lq == 0u || s.lk == 0u) return; // uniform across the workgroup
	int lq = int(s.lq), lk = int(s.lk);
	uint kvh = kvHead(h);
	uint r = gl_LocalInvocationIndex / T, c = gl_LocalInvocationIndex % T;
	uint nj = (s.lk + T - 1u) / T, tiles = (s.lq + T - 1u) / T * nj;
	for (uint tile = gl_WorkGroupID.x; tile < tiles; tile += gl_NumWorkGroups.x) {
		int i0 = int(tile / nj * T), j0 = int(tile % nj * T);
		int i = i0 + int(r), j = j0 + int(c);
		// Tiles that no row of them sees a key of are only filled with -inf.
		bool live = j0 < keyHi(min(i0 + int(T), lq) - 1, lq, lk) && j0 + int(T) > keyLo(i0, lq, lk);
		float acc = 0.0;
		if (live) {
			int kr = j0 + int(r); // the key whose dims this invocation stages
			for (uint d0 = 0; d0 < D; d0 += T) {
				barrier();
				qTile[r * (T + 1) + c] = i < lq ? qAt(s.qStart + uint(i), h, d0 + c) : 0.0;
				kTile[r * (T + 1) + c] = kr < lk ? kAt(s.kStart + uint(kr), kvh, d0 + c) : 0.0;
				barrier();
				for (uint t = 0; t < T; t++) acc += qTile[r * (T + 1) + t] * kTile[c * (T + 1) + t];
			}
		}
		if (i < lq && j < lk) {
			bool visible = j >= keyLo(i, lq, lk) && j < keyHi(i, lq, lk);
			sData[scoresRow(s, b, h, uint(i)) + uint(j)] = visible ? score(pc.scale * acc) : NEG_INF;
		}
	}
}
#endif

#ifdef NAIVE_SOFTMAX
shared float redM[WG], redL[WG];

void main() {
	uint b = gl_WorkGroupID.z, h = gl_WorkGroupID.y;
	Seq s = sequence(b);
	uint lid = gl_LocalInvocationIndex;
	for (uint i = gl_WorkGroupID.x; i < s.lq; i += gl_NumWorkGroups.x) {
		uint row = scoresRow(s, b, h, i);
		float m = NEG_INF, l = 0.0;
		for (uint j = lid; j < s.lk; j += WG) mergeStats(m, l, sData[row + j], 1.0);
		barrier(); // the previous row's reads of redM[0], redL[0] are done
		redM[lid] = m;
		redL[lid] = l;
		barrier();
		for (uint w = WG / 2u; w > 0u; w >>= 1) {
			if (lid < w) {
				float mm = redM[lid], ll = redL[lid];
				mergeStats(mm, ll, redM[lid + w], redL[lid + w]);
				redM[lid] = mm;
				redL[lid] = ll;
			}
			barrier();
		}
		m = redM[0];
		l = redL[0];
		float inv = 1.0 / l;
		for (uint j = lid; j < s.lk; j += WG) sData[row + j] = l == 0.0 ? 0.0 : exp(sData[row + j] - m) * inv;
		if (lid == 0u) storeLSE(s.qStart + i, h, m, l);
	}
}
#endif

#ifdef NAIVE_PV
const uint PAIRS = D / 2u;
const uint PPI = (PAIRS + T - 1u) / T; // dim pairs per invocation: c, c+T, ...

shared float pTile[T * (T + 1)];
shared float vTile[T * D];

void main() {
	uint b = gl_WorkGroupID.z, h = gl_WorkGroupID.y;
	Seq s = sequence(b);
	int lq = int(s.lq), lk = int(s.lk);
	uint kvh = kvHead(h);
	uint lid = gl_LocalInvocationIndex;
	uint r = lid / T, c = lid % T;
	for (uint blk = gl_WorkGroupID.x; blk * T < s.lq; blk += gl_NumWorkGroups.x) {
		int i0 = int(blk * T), i = i0 + int(r);
		vec2 acc[PPI];
		for (uint k = 0; k < PPI; k++) acc[k] = vec2(0.0);
		// P is zero outside the keys some row of the block sees.
		ivec2 keys = blockKeys(i0, int(T), lq, lk);
		for (int j0 = keys.x; j0 < keys.y; j0 += int(T)) {
			barrier();
			int j = j0 + int(c);
			pTile[r * (T + 1) + c] = i < lq && j < lk ? sData[scoresRow(s, b, h, uint(i)) + uint(j)] : 0.0;
			for (uint idx = lid; idx < T * D; idx += WG) {
				int key = j0 + int(idx / D);
				vTile[idx] = key < lk ? vAt(s.kStart + uint(key), kvh, idx % D) : 0.0;
			}
			barrier();
			for (uint t = 0; t < T; t++) {
				float p = pTile[r * (T + 1) + t];
				for (uint k = 0; k < PPI; k++) {
					uint pair = c + k * T;
					if (pair < PAIRS) acc[k] += weigh(p, vec2(vTile[t * D + 2u * pair], vTile[t * D + 2u * pair + 1u]));
				}
			}
		}
		if (i < lq) {
			for (uint k = 0; k < PPI; k++) {
				uint pair = c + k * T;
				if (pair < PAIRS) storeO(s.qStart + uint(i), h, 2u * pair, acc[k].x, acc[k].y);
			}
		}
	}
}
#endif
