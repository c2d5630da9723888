// The attention kernels' tensors: q, k, v, o and lse at bindings 0-4 (the sequence lengths are
// binding 5, params.glsl), with element access by token, head and dim. Declare DTYPE first.
//
// K and V rows: every kernel finds row (token t, head h) of K or V through kRow(t, h) and
// vRow(t, h), the index of its first element (first word for quantized codes, whose offsets and
// strides are in words), not from the push constants itself (kAt and vAt read through them;
// the coopmat2 tier's tensor layouts, which need evenly strided tokens, are the exception).
// t is a token of the tensor bound (a sequence's keys are tokens kStart.. of it). Strided, row
// (t, h) is at off + t * tokenStride + h * headStride. Paged (FLAG_PAGED: a paged KV cache's
// pages, in ordinary buffers), token t is row page * P + t % P of the buffers, page being word
// t / P of the block table, which starts at word pc.kOff of the sequence table (binding 5), P =
// pc.vOff tokens per page; K and V share the table, and their offsets are 0.
#ifndef TENSORS_GLSL
#define TENSORS_GLSL

#include "params.glsl"
#include "io.glsl"
#include "softmax.glsl"

layout(std430, binding = 0) readonly buffer Q { uint qData[]; };
layout(std430, binding = 1) readonly buffer K { uint kData[]; };
layout(std430, binding = 2) readonly buffer V { uint vData[]; };
layout(std430, binding = 3) writeonly buffer O { uint oData[]; };
layout(std430, binding = 4) writeonly buffer LSE { float lseData[]; };

DECLARE_LOAD(loadQ, qData)
DECLARE_LOAD(loadK, kData)
DECLARE_LOAD(loadV, vData)

bool paged() { return (pc.flags & FLAG_PAGED) != 0u; }

// tableRow is the row of a paged buffer that holds token t, through the block table at word
// table of the sequence table (binding 5), P = pt tokens per page: table[t / P] * P + t % P.
uint tableRow(uint table, uint pt, uint t) { return cuSeqlens[table + t / pt] * pt + t % pt; }

// pagedRow is the row of the buffers that holds token t of paged K and V.
uint pagedRow(uint t) { return tableRow(pc.kOff, pc.vOff, t); }

// kRow and vRow are the index of the first element of row (token t, head h) of K and V.
uint kRow(uint t, uint h) {
	if (paged()) return pagedRow(t) * pc.kTokenStride + h * pc.kHeadStride;
	return pc.kOff + t * pc.kTokenStride + h * pc.kHeadStride;
}
uint vRow(uint t, uint h) {
	if (paged()) return pagedRow(t) * pc.vTokenStride + h * pc.vHeadStride;
	return pc.vOff + t * pc.vTokenStride + h * pc.vHeadStride;
}

// qAt, kAt and vAt read dim d of token t, head h.
float qAt(uint t, uint h, uint d) { return loadQ(pc.qOff + t * pc.qTokenStride + h * pc.qHeadStride + d); }
float kAt(uint t, uint h, uint d) { return loadK(kRow(t, h) + d); }
float vAt(uint t, uint h, uint d) { return loadV(vRow(t, h) + d); }

// storeO writes dims d and d+1 (d even) of token t, head h of the output: one invocation stores
// both halves of a 16-bit pair's word.
void storeO(uint t, uint h, uint d, float a, float b) {
	uint e = pc.oOff + t * pc.oTokenStride + h * pc.oHeadStride + d;
	if (DTYPE == DT_F32) {
		oData[e] = floatBitsToUint(a);
		oData[e + 1] = floatBitsToUint(b);
	} else {
		oData[e >> 1] = pack2(a, b);
	}
}

// storeLSE writes, if asked for, the logsumexp of a row with running max m and sum l: -inf when
// the row saw no key.
void storeLSE(uint t, uint h, float m, float l) {
	if ((pc.flags & FLAG_WRITE_LSE) != 0u)
		lseData[t * pc.hq + h] = l == 0.0 ? NEG_INF : m + log(l);
}

#endif
