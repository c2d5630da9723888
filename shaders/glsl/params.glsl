// Push constants and sequence lookup shared by the attention kernels. Tensors are packed
// ("varlen"): token t of head h, dim d of a tensor lives at off + t*tokenStride + h*headStride + d
// elements. Sequence b owns query tokens [cu[b], cu[b+1]) and key tokens
// [cu[nSeq+1+b], cu[nSeq+2+b]) of the seqlens buffer.
#ifndef PARAMS_GLSL
#define PARAMS_GLSL

layout(push_constant) uniform Params {
	uint nSeq;
	uint hq;
	uint hk;
	uint flags; // FLAG_*
	float scale;
	float softcap;     // 0 = off
	int windowLeft;    // -1 = unbounded
	int windowRight;   // -1 = unbounded; causal is windowRight = 0
	uint qTokenStride, qHeadStride;
	uint kTokenStride, kHeadStride;
	uint vTokenStride, vHeadStride;
	uint oTokenStride, oHeadStride;
	uint qOff, kOff, vOff, oOff;
} pc;

const uint FLAG_WRITE_LSE = 1u;

layout(std430, binding = 5) readonly buffer SeqLens { uint cuSeqlens[]; };

struct Seq {
	uint qStart, lq, kStart, lk;
};

Seq sequence(uint b) {
	Seq s;
	s.qStart = cuSeqlens[b];
	s.lq = cuSeqlens[b + 1] - s.qStart;
	s.kStart = cuSeqlens[pc.nSeq + 1 + b];
	s.lk = cuSeqlens[pc.nSeq + 2 + b] - s.kStart;
	return s;
}

// kvHead maps a query head to the key/value head it reads (GQA/MQA).
uint kvHead(uint h) { return h / (pc.hq / pc.hk); }

#endif
