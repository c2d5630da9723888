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
//                  or bf16 inputs, fp32 accumulation), the softmax on scores staged in shared
//                  memory.
//   TIER_COOPMAT2  workgroup-scope matrices of VK_NV_cooperative_matrix2: the whole block's
//                  scores, softmax and output stay in matrices (fp16 or bf16 inputs, fp32
//                  accumulation).
// The matrix tiers' element type ELEM is fp16, or bf16 (GL_EXT_bfloat16) with ELEM_BF16 defined;
// such a kernel takes inputs of that type only.

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
#if defined(TIER_COOPMAT) || defined(TIER_COOPMAT2)
#include "elem.glsl"
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

#if defined(TIER_SCALAR) || defined(TIER_SUBGROUP) || defined(TIER_COOPMAT)
// Rows of the block for attend_scalar.glsl, attend_subgroup.glsl and attend_coopmat.glsl: row r of
// the block is query token row0 + r of head h, which sees keys [keyLo, keyHi) of its sequence.
struct Block {
	Seq s;
	uint h, kvh;  // query head, kv head
	int row0;     // the block's first query token
	int lq, lk;
	ivec2 keys;   // the keys some row of the block sees, [x, y)
	int kEnd;     // tiles are zero from the sequence's end
};

Block block() {
	Block k;
	k.s = sequence(gl_WorkGroupID.z);
	k.h = gl_WorkGroupID.y;
	k.kvh = kvHead(k.h);
	k.row0 = int(gl_WorkGroupID.x * BR);
	k.lq = int(k.s.lq);
	k.lk = int(k.s.lk);
	k.keys = blockKeys(k.row0, int(BR), k.lq, k.lk);
	k.kEnd = k.lk;
	return k;
}

bool blockIdle(Block k) { return k.row0 >= k.lq; }
bool rowValid(Block k, uint r) { return k.row0 + int(r) < k.lq; }
uint rowToken(Block k, uint r) { return k.s.qStart + uint(k.row0) + r; }
float rowQuery(Block k, uint r, uint d) { return qAt(rowToken(k, r), k.h, d); }

ivec2 rowKeys(Block k, uint r) {
	int i = k.row0 + int(r);
	return ivec2(keyLo(i, k.lq, k.lk), keyHi(i, k.lq, k.lk));
}

bool rowWritesO(Block k, float l) { return true; }
void storeRow(Block k, uint r, uint d, float a, float b) { storeO(rowToken(k, r), k.h, d, a, b); }
void storeRowLSE(Block k, uint r, float m, float l) { storeLSE(rowToken(k, r), k.h, m, l); }

// The block reads its keys in order, a tile of BC keys after another (attend_coopmat.glsl).
int firstTile(Block k) { return k.keys.x; }
int tileStride() { return int(BC); }
#endif
#if defined(TIER_SCALAR) || defined(TIER_SUBGROUP)
#include "attend_tile.glsl"
#endif

#ifdef TIER_SCALAR
#include "attend_scalar.glsl"
#endif
#ifdef TIER_SUBGROUP
#include "attend_subgroup.glsl"
#endif

#ifdef TIER_COOPMAT
#include "attend_coopmat.glsl"
#endif
#ifdef TIER_COOPMAT2
#include "flash_fwd_coopmat2.glsl"
#endif
