#version 460
// Merge of partial attention results over disjoint key sets: Engine.Merge, and the second pass of
// the split-KV decode (decode.comp writes the partials, this kernel combines them), row by row as
// merge.glsl says.
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

#include "merge.glsl"

// The merge takes hq, flags and o's strides and offset from the push constants as every kernel
// does (params.glsl), and its partials' geometry from words it has no other use for:
#define NPART pc.nSeq   // partials S
#define NTOK pc.hk      // tokens
#define PO_OFF pc.qOff  // first float of the partial outputs
#define PL_OFF pc.kOff  // first float of the partial logsumexps

const uint PAIRS = D / 2u;

void main() {
	uint rows = NTOK * pc.hq;
	uint items = rows * PAIRS;
	uint stride = gl_NumWorkGroups.x * WG;
	for (uint it = gl_WorkGroupID.x * WG + gl_LocalInvocationIndex; it < items; it += stride) {
		uint row = it / PAIRS, pair = it % PAIRS;
		storeMerged(row / pc.hq, row % pc.hq, pair, mergePairs(NPART, rows, row, pair, PO_OFF, PL_OFF));
	}
}
