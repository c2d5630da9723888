// Push constants and sequence lookup shared by the attention kernels. Tensors are packed
// ("varlen"): token t of head h, dim d of a tensor lives at off + t*tokenStride + h*headStride + d
// elements. Sequence b owns query tokens [cu[b], cu[b+1]) and key tokens
// [cu[nSeq+1+b], cu[nSeq+2+b]) of the seqlens buffer; with FLAG_SEQ_TABLE its query and key
// tokens are given explicitly instead (sequence()), so that the keys of the sequences need not be
// adjacent (KV cache regions) nor the sequences in order. Word cu[nSeq] is the total of query
// tokens either way; the words from cu[2 * (nSeq + 1)] on are the kernel's own.
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
const uint FLAG_SEQ_TABLE = 8u;
const uint FLAG_PAGED = 16u; // K and V are pages found through a block table (tensors.glsl)

layout(std430, binding = 5) readonly buffer SeqLens { uint cuSeqlens[]; };

struct Seq {
	uint qStart, lq, kStart, lk;
};

// sequence is the tokens of sequence b: from the cumulative lengths, or with FLAG_SEQ_TABLE from
// the four words (qStart, lq, kStart, lk) at cu[E + 4b], E being the word cu[nSeq + 1].
Seq sequence(uint b) {
	Seq s;
	if ((pc.flags & FLAG_SEQ_TABLE) != 0u) {
		uint e = cuSeqlens[pc.nSeq + 1u] + 4u * b;
		s.qStart = cuSeqlens[e];
		s.lq = cuSeqlens[e + 1u];
		s.kStart = cuSeqlens[e + 2u];
		s.lk = cuSeqlens[e + 3u];
		return s;
	}
	s.qStart = cuSeqlens[b];
	s.lq = cuSeqlens[b + 1] - s.qStart;
	s.kStart = cuSeqlens[pc.nSeq + 1 + b];
	s.lk = cuSeqlens[pc.nSeq + 2 + b] - s.kStart;
	return s;
}

// kvHead maps a query head to the key/value head it reads (GQA/MQA).
uint kvHead(uint h) { return h / (pc.hq / pc.hk); }

#endif
