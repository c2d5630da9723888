#version 460
// Merge of partial attention results over disjoint key sets: Engine.Merge, and the second pass of
// the split-KV decode (decode.comp writes the partials, this kernel combines them). For each row
// (token t, query head h) of S fp32 partials (O_s, lse_s):
//
//   lse = log sum_s exp(lse_s),   O = sum_s exp(lse_s - lse) O_s.
//
// As in the forward kernels: a partial with lse_s = -inf (it saw no key) weighs nothing and its
// O_s is never used (a decode split that saw no key leaves it unwritten); a row whose partials
// are all -inf gives O = 0 and lse = -inf; a NaN lse_s makes its row NaN (so does +inf, as
// exp(inf - inf) does), and a NaN in a weighed O_s stays in its element.
//
// Partials are contiguous fp32: O_s at binding 6 as [S][tokens][hq][D] from float PO_OFF, lse_s
// at binding 7 as [S][tokens][hq] from float PL_OFF. O is stored in o's type through storeO
// (binding 3, o's strides and offset as in every kernel), the logsumexp, if asked for, through
// storeLSE (binding 4). Bindings 0-2 and 5 are declared by tensors.glsl and not read.
// Grid: x workgroups of WG invocations, one invocation per dim pair of a row, looped over
// strided by the grid, so any width works.

#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require

layout(constant_id = 0) const uint DTYPE = 0; // o's storage type
layout(constant_id = 1) const uint D = 128;   // head dim, even
layout(constant_id = 2) const uint WG = 64;   // invocations per workgroup

layout(local_size_x_id = 2) in;

#include "tensors.glsl"

layout(std430, binding = 6) readonly buffer PartO { float partO[]; };
layout(std430, binding = 7) readonly buffer PartLSE { float partLSE[]; };

// The merge takes hq, flags and o's strides and offset from the push constants as every kernel
// does (params.glsl), and its partials' geometry from words it has no other use for:
#define NPART pc.nSeq   // partials S
#define NTOK pc.hk      // tokens
#define PO_OFF pc.qOff  // first float of the partial outputs
#define PL_OFF pc.kOff  // first float of the partial logsumexps

const uint PAIRS = D / 2u;

// Partials are read in batches of BATCH, every load of a batch issued before any is used, so
// that a row is meant to cost NPART / BATCH memory round trips a pass rather than one a partial
// (how the driver schedules the loads decides); the sums run in partial order all the same. A
// batch reads the outputs of partials that saw no key too, but never uses them.
const uint BATCH = 8u;

void main() {
	uint rows = NTOK * pc.hq;
	uint items = rows * PAIRS;
	uint stride = gl_NumWorkGroups.x * WG;
	for (uint it = gl_WorkGroupID.x * WG + gl_LocalInvocationIndex; it < items; it += stride) {
		uint row = it / PAIRS, pair = it % PAIRS;
		float m = NEG_INF;
		for (uint s0 = 0u; s0 < NPART; s0 += BATCH) {
			float x[BATCH];
			[[unroll]] for (uint j = 0u; j < BATCH; j++)
				x[j] = s0 + j < NPART ? partLSE[PL_OFF + (s0 + j) * rows + row] : NEG_INF;
			[[unroll]] for (uint j = 0u; j < BATCH; j++) m = maxNaN(m, x[j]);
		}
		float l = 0.0;
		vec2 acc = vec2(0.0);
		if (m != NEG_INF) {
			for (uint s0 = 0u; s0 < NPART; s0 += BATCH) {
				float x[BATCH];
				vec2 po[BATCH];
				[[unroll]] for (uint j = 0u; j < BATCH; j++) {
					bool has = s0 + j < NPART;
					uint s = has ? s0 + j : 0u;
					x[j] = has ? partLSE[PL_OFF + s * rows + row] : NEG_INF;
					uint e = PO_OFF + (s * rows + row) * D + 2u * pair;
					po[j] = vec2(partO[e], partO[e + 1u]);
				}
				[[unroll]] for (uint j = 0u; j < BATCH; j++) {
					if (x[j] == NEG_INF) continue; // no key: nothing to weigh, nothing written
					float w = exp(x[j] - m);
					l += w;
					acc += weigh(w, po[j]);
				}
			}
		}
		uint t = row / pc.hq, h = row % pc.hq;
		float inv = l == 0.0 ? 0.0 : 1.0 / l;
		storeO(t, h, 2u * pair, acc.x * inv, acc.y * inv);
		if (pair == 0u) storeLSE(t, h, m, l);
	}
}
