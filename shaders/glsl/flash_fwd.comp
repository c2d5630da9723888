#version 460
// FlashAttention-2 forward: tiled over keys, online softmax with deferred normalization, fp32
// accumulation. One workgroup computes BR query rows of one (sequence, query head); K and V tiles
// of BC keys are staged in shared memory. Grid: (row blocks, query heads, sequences).
//
// Tiers (one define each):
//   TIER_SCALAR    one invocation per query row; needs nothing beyond Vulkan compute.
//   TIER_SUBGROUP  a subgroup per ROWS query rows: lanes split the keys for Q.K^T and the head
//                  dims for P.V, with subgroup max/add reductions for the softmax statistics.
//   TIER_COOPMAT   a subgroup per 16 query rows: Q.K^T and P.V on cooperative matrices (fp16
//                  inputs, fp32 accumulation), the softmax on scores staged in shared memory.
//   TIER_COOPMAT2  workgroup-scope matrices of VK_NV_cooperative_matrix2: the whole block's
//                  scores, softmax and output stay in matrices (fp16 inputs, fp32 accumulation).

#extension GL_GOOGLE_include_directive : require
#if defined(TIER_SUBGROUP) || defined(TIER_COOPMAT) || defined(TIER_COOPMAT2)
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_vote : require
#endif
#ifdef TIER_COOPMAT
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#endif
#ifdef TIER_COOPMAT2
#extension GL_KHR_cooperative_matrix : require
#extension GL_NV_cooperative_matrix2 : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_16bit_storage : require
#endif

layout(constant_id = 0) const uint DTYPE = 0;
layout(constant_id = 1) const uint D = 128;   // head dim
layout(constant_id = 2) const uint BR = 32;   // query rows per workgroup
layout(constant_id = 3) const uint BC = 32;   // keys per tile
layout(constant_id = 4) const uint WG = 32;   // invocations per workgroup
#if defined(TIER_SUBGROUP) || defined(TIER_COOPMAT) || defined(TIER_COOPMAT2)
layout(constant_id = 5) const uint SG = 32;   // subgroup size the tile sizes were chosen for
#endif

layout(local_size_x_id = 4) in;

#include "tensors.glsl"
#include "mask.glsl"

#if defined(TIER_SCALAR) || defined(TIER_SUBGROUP)
// K and V tiles; K rows padded by one float so lanes reading different keys miss bank conflicts.
const uint KS = D + 1;
shared float kTile[BC * KS];
shared float vTile[BC * D];

// loadTile stages keys [k0, k0+BC) of kv head kvh into shared memory, zero past the end.
void loadTile(Seq s, uint kvh, int k0) {
	for (uint idx = gl_LocalInvocationIndex; idx < BC * D; idx += WG) {
		uint j = idx / D, d = idx % D;
		int key = k0 + int(j);
		float kv = 0.0, vv = 0.0;
		if (key < int(s.lk)) {
			uint t = s.kStart + uint(key);
			kv = kAt(t, kvh, d);
			vv = vAt(t, kvh, d);
		}
		kTile[j * KS + d] = kv;
		vTile[j * D + d] = vv;
	}
}

#endif

#ifdef TIER_SCALAR
#include "flash_fwd_scalar.glsl"
#endif
#ifdef TIER_SUBGROUP
#include "flash_fwd_subgroup.glsl"
#endif
#ifdef TIER_COOPMAT
#include "flash_fwd_coopmat.glsl"
#endif
#ifdef TIER_COOPMAT2
#include "flash_fwd_coopmat2.glsl"
#endif
