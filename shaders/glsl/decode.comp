#version 460
// Split-KV decoding ("flash-decoding"): a few new query tokens per sequence against its keys,
// which are split into chunks; a workgroup computes one chunk of one KV head for up to BR rows
// with the forward kernels' online softmax and writes a partial output and logsumexp, and
// merge.comp combines the chunks' partials into the result (Engine.Decode), or, with MERGE_LAST,
// the workgroup that finishes a block's chunks last merges them (mergeLast).
//
// Rows: those of (sequence, kv head kvh) are its lq new tokens times the G = hq / hk query heads
// that read kvh, token-major: row r is token r / G of query head kvh * G + r % G. They share the
// K/V tiles that the workgroup stages, so each K/V byte of a chunk is read once when the lq * G
// rows fit one workgroup (BR); more rows take several row blocks, each reading the chunk.
// Masks as the forward's (mask.glsl): causal among the new tokens, bottom-right aligned.
//
// Grid: (chunks, hk * row blocks, sequences). At the scalar tier chunk c of a sequence holds its
// keys [c * CHUNK, (c + 1) * CHUNK), CHUNK being the word after the cumulative lengths in the
// seqlens buffer (index 2 * (nSeq + 1)); at the other tiers chunk c of n holds the tiles of BC
// keys t == c (mod n) (firstTile), so the chunks of a sequence read neighbouring memory at once
// (at the subgroup tier, with CONTIGUOUS, ranges of keys as at the scalar tier); either way
// a sequence shorter than others has chunks without keys. With FLAG_PARTIAL, chunk c's partials
// go to binding 6 ([chunks][totalQ][hq][D] fp32) and binding 7 ([chunks][totalQ][hq]): every row
// writes its logsumexp, -inf where the chunk holds no key it sees, and then no output (merge.comp
// does not read it). Without it (one chunk), results go straight to o and lse as the forward's
// do.
//
// Tiers (one define each):
//   TIER_SCALAR    one invocation per row (BR == WG), K/V tiles staged in shared memory
//                  (attend_tile.glsl, attend_scalar.glsl, as flash_fwd's scalar tier).
//   TIER_SUBGROUP  each subgroup (WG / SG of them a workgroup, each a chunk of its own: the
//                  grid's x is the chunks / (WG / SG)) streams K and V into registers, lanes
//                  splitting each key's dims (decode_stream.glsl); BC is the keys a step reads.
//   TIER_COOPMAT   subgroups of 16 rows, Q.K^T and P.V on cooperative matrices, K/V tiles
//                  staged in shared memory (attend_coopmat.glsl, as flash_fwd's coopmat tier);
//                  K and V of the matrices' type ELEM (elem.glsl), fp16 or bf16. With IMMA (and
//                  KV_INT8 or KV_INT4): one subgroup of 16 rows on int8 matrices, INT8's K and V
//                  codes read as matrices straight from their buffers, INT4's staged as int8 in
//                  shared memory (decode_imma.glsl).
// K and V (one define at most):
//   (none)         stored as DTYPE, as q.
//   KV_INT8        quantized, package quant's Int8 (quant.glsl: codes, scales at bindings 8 and
//   KV_INT4        9, queries as QMODE says), dequantized as they are read: each value is the
//                  float kernel's, and so is everything after.

#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#ifdef TIER_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_vote : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif
#ifdef TIER_COOPMAT
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_vote : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#ifdef IMMA
#extension GL_EXT_shader_explicit_arithmetic_types_int8 : require
#extension GL_EXT_shader_explicit_arithmetic_types_int32 : require
#extension GL_EXT_shader_8bit_storage : require
#else
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#include "elem.glsl"
#endif
#endif

layout(constant_id = 0) const uint DTYPE = 0;
layout(constant_id = 1) const uint D = 128;   // head dim
layout(constant_id = 2) const uint BR = 32;   // rows per workgroup
layout(constant_id = 3) const uint BC = 32;   // keys per tile
layout(constant_id = 4) const uint WG = 32;   // invocations per workgroup
#if defined(TIER_SUBGROUP) || defined(TIER_COOPMAT)
layout(constant_id = 5) const uint SG = 32;   // subgroup size the tile sizes were chosen for
#endif

// CONTIGUOUS (subgroup tier; ids 6 to 8 are quant.glsl's): chunk c holds keys [c * CHUNK,
// (c + 1) * CHUNK) as at the scalar tier, read a tile after the other, instead of interleaved
// tiles (firstTile). A tuning setting, so a constant: the default pipeline carries none of it.
layout(constant_id = 9) const bool CONTIGUOUS = false;
// PREFETCH (subgroup tier): each step's loads are issued during the step before (the host sets it
// for quantized K/V, decodePrefetchBits).
layout(constant_id = 10) const bool PREFETCH = false;

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

// coherent: with MERGE_LAST another workgroup of the dispatch reads them (mergeLast).
layout(std430, binding = 6) coherent buffer PartO { float partO[]; };
layout(std430, binding = 7) coherent buffer PartLSE { float partLSE[]; };

// MERGE_LAST (with FLAG_PARTIAL): the workgroup that finishes last among those of its block
// (sequence, kv head, row block) merges their partials into o and lse (merge.glsl), bit for bit
// as merge.comp would; each counts itself in arrivals, one word per block that the host zeroes
// once and the last workgroup zeroes again for the next dispatch: word qStart * (grid's y) + y,
// so that dispatches side by side (one per group of KV cache sequences) count apart. After
// quant.glsl's four bindings where it has them.
layout(constant_id = 11) const bool MERGE_LAST = false;
#ifdef KV_QUANT
#define ARRIVALS_BINDING 12
#else
#define ARRIVALS_BINDING 8
#endif
layout(std430, binding = ARRIVALS_BINDING) coherent buffer Arrivals { uint arrivals[]; };
shared uint lastArrival;

// The last workgroup merges with few invocations, after the others are done: 8 pairs an
// invocation (every head dim has a multiple of 8 pairs), so that one new token of 4 query heads
// per KV head at d = 128 takes one item per invocation of a 32-wide subgroup, and 4 partials a
// batch, so that a batch's loads (64 floats) stay within the registers the kernel's loop
// already takes.
#define MERGE_PAIRS 8u
#define MERGE_BATCH 4u
#include "merge.glsl"

// chunkIndex is the chunk of the invocation's block, of chunkCount: the workgroup's, or at the
// subgroup tier, where a workgroup may hold WG / SG subgroups, each a block of its own, the
// subgroup's. The subgroup's index passes through a subgroup reduction, whose result the
// compiler knows to be the same in every lane: read plainly, it made the kernel 3x slower on the
// H100 (163 registers against 128), at one subgroup a workgroup too, so that case skips it.
// Clamped for a driver that runs narrower subgroups than the pinned SG (its results are NaN, see
// widthOK, but its writes stay within the arrays).
#ifdef TIER_SUBGROUP
uint subgroupIndex() { return WG == SG ? 0u : min(subgroupMin(gl_SubgroupID), WG / SG - 1u); }
uint chunkIndex() { return gl_WorkGroupID.x * (WG / SG) + subgroupIndex(); }
uint chunkCount() { return gl_NumWorkGroups.x * (WG / SG); }
#else
uint chunkIndex() { return gl_WorkGroupID.x; }
uint chunkCount() { return gl_NumWorkGroups.x; }
#endif

// Block is the work of one workgroup (one subgroup at the subgroup tier).
struct Block {
	Seq s;
	uint split, kvh, g; // chunk, kv head, query heads per kv head
	uint r0, rows;      // the block's first row; rows of (sequence, kv head): lq * g
	int c0, c1;         // the chunk's keys [c0, c1)
	ivec2 keys;         // the keys of the chunk some row of the block sees, [x, y)
	int kEnd;           // tiles are zero from keys.y
};

// contiguous reports whether chunks are ranges of keys (the scalar tier's, CONTIGUOUS) rather
// than interleaved tiles.
bool contiguous() {
#ifdef TIER_SCALAR
	return true;
#else
	return CONTIGUOUS;
#endif
}

Block block() {
	Block k;
	k.s = sequence(gl_WorkGroupID.z);
	k.split = chunkIndex();
	k.kvh = gl_WorkGroupID.y % pc.hk;
	k.g = pc.hq / pc.hk;
	k.r0 = gl_WorkGroupID.y / pc.hk * BR;
	k.rows = k.s.lq * k.g;
	int lq = int(k.s.lq), lk = int(k.s.lk);
	if (contiguous()) {
		int chunk = int(cuSeqlens[2u * (pc.nSeq + 1u)]);
		k.c0 = min(int(k.split) * chunk, lk);
		k.c1 = min(k.c0 + chunk, lk);
	} else {
		k.c0 = 0; // chunks interleave tiles of the sequence's keys (firstTile)
		k.c1 = lk;
	}
	int i0 = int(k.r0 / k.g);
	int i1 = int((max(min(k.r0 + BR, k.rows), 1u) - 1u) / k.g); // last token of the block
	ivec2 vis = blockKeys(i0, i1 - i0 + 1, lq, lk);
	k.keys = ivec2(max(k.c0, vis.x), min(k.c1, vis.y));
	k.kEnd = k.keys.y;
	return k;
}

// rowHead is the query head of row r.
uint rowHead(Block k, uint r) { return k.kvh * k.g + r % k.g; }

// tokenKeys are the keys of the chunk that token i sees, [x, y).
ivec2 tokenKeys(Block k, int i) {
	int lq = int(k.s.lq), lk = int(k.s.lk);
	return ivec2(max(keyLo(i, lq, lk), k.c0), min(keyHi(i, lq, lk), k.c1));
}

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

// Rows of the block for attend_scalar.glsl and attend_subgroup.glsl: row r of the block is row
// r0 + r of (sequence, kv head).
bool blockIdle(Block k) { return k.r0 >= k.rows; }
bool rowValid(Block k, uint r) { return k.r0 + r < k.rows; }
uint rowToken(Block k, uint r) { return k.s.qStart + (k.r0 + r) / k.g; }
float rowQuery(Block k, uint r, uint d) { return queryAt(rowToken(k, r), rowHead(k, k.r0 + r), d); }
ivec2 rowKeys(Block k, uint r) { return tokenKeys(k, int((k.r0 + r) / k.g)); }
bool rowWritesO(Block k, float l) { return writesO(l); }

void storeRow(Block k, uint r, uint d, float a, float b) {
	storeOut(k.split, rowToken(k, r), rowHead(k, k.r0 + r), d, a, b);
}

void storeRowLSE(Block k, uint r, float m, float l) {
	storeOutLSE(k.split, rowToken(k, r), rowHead(k, k.r0 + r), m, l);
}

// firstTile is the first key of the chunk's first tile: chunk c of n takes the tiles of BC keys t
// == c (mod n) of those the block sees; tileStride is the keys from one of its tiles to the next.
// Contiguous chunks (which start on tiles) are read a tile after the other from the first the
// block sees.
int firstTile(Block k) {
	int n = int(chunkCount()), bc = int(BC);
	int t0 = k.keys.x / bc;
	if (contiguous()) return t0 * bc;
	return (t0 + (int(k.split) - t0 % n + n) % n) * bc;
}
int tileStride() { return int((contiguous() ? 1u : chunkCount()) * BC); }

// mergeBarrier orders the workgroup's accesses to memory before it with those after it: a
// workgroup's barrier, or where the workgroup is one subgroup (the subgroup tier's default, one
// subgroup of 16 rows at the coopmat tier, the tensor-core kernels, where the driver runs them
// in one) the subgroup's, which lavapipe compiles without splitting the kernel at every barrier
// into coroutines (its compiler took minutes over that for the unrolled subgroup kernels; it
// knows its subgroups when it compiles, so the test folds away).
void mergeBarrier() {
#if defined(TIER_SUBGROUP) || defined(TIER_COOPMAT)
	if (WG == SG && gl_NumSubgroups == 1u) {
		subgroupBarrier();
		return;
	}
#endif
	barrier();
}

// mergeLast, run by every workgroup once its chunks' partials are written: with MERGE_LAST, the
// last of a block's workgroups to arrive merges the block's rows. Uniform across the workgroup.
void mergeLast() {
	Block k = block();
	if (!MERGE_LAST || !partial() || blockIdle(k)) return; // nothing written, nothing counted
	memoryBarrierBuffer(); // the workgroup's partials before its arrival
	mergeBarrier();
	if (gl_LocalInvocationIndex == 0u) {
		// The barrier above orders only shared memory: fences on both sides of the counter carry
		// the workgroup's partials before it, and the others' after it, as the model asks.
		uint at = k.s.qStart * gl_NumWorkGroups.y + gl_WorkGroupID.y;
		memoryBarrierBuffer();
		bool last = atomicAdd(arrivals[at], 1u) == gl_NumWorkGroups.x - 1u;
		if (last) atomicExchange(arrivals[at], 0u);
		memoryBarrierBuffer();
		lastArrival = last ? 1u : 0u;
	}
	mergeBarrier();
	if (lastArrival == 0u) return;
	memoryBarrierBuffer(); // the other workgroups' partials after their arrivals
	uint perRow = (D / 2u + MERGE_PAIRS - 1u) / MERGE_PAIRS, rows = cuSeqlens[pc.nSeq] * pc.hq;
	uint items = min(BR, k.rows - k.r0) * perRow;
	for (uint it = gl_LocalInvocationIndex; it < items; it += WG) {
		uint r = it / perRow, p0 = it % perRow * MERGE_PAIRS;
		uint t = rowToken(k, r), h = rowHead(k, k.r0 + r);
		storeMerged(t, h, p0, mergePairs(chunkCount(), rows, t * pc.hq + h, p0, 0u, 0u));
	}
}

// The tier's kernel computes the workgroup's chunks as its main would (attendBlock), and then
// the last workgroup of a block merges (mergeLast).
#define main attendBlock
#ifdef TIER_SCALAR
#include "attend_tile.glsl"
#include "attend_scalar.glsl"
#endif
#ifdef TIER_SUBGROUP
#include "decode_stream.glsl"
#endif
#ifdef TIER_COOPMAT
#ifdef IMMA
#include "decode_imma.glsl"
#else
#include "attend_coopmat.glsl"
#endif
#endif
#undef main

void main() {
	attendBlock();
	mergeLast();
}
