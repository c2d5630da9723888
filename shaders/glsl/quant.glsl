// Quantized K and V (KV_INT8 or KV_INT4) and FP8 E4M3 queries, dequantized as package quant
// specifies them (its package documentation is the specification; attention's tests hold the
// kernels to it bit for bit): element = value(field) * scale, one float32 multiplication, which
// is exact; scales are bf16, read as uintBitsToFloat(bits << 16).
//
// Codes: K and V are bound at bindings 1 and 2 as words (quant.Tensor.Words): word w of row
// (token t, head h) at kRow(t, h) + w (tensors.glsl), the push constants being in words;
// channel c of the row is field c % PER of word c / PER, in its bits BITS * (c % PER).
// Scales: bf16, two per 32-bit word (the lower index in the low half), at bindings 8 (K) and 9
// (V), group g of row (t, h) at element off + t * tokenStride + h * headStride + g, each tensor's
// (off, tokenStride, headStride) in the sequence table after the chunk size (SEQ_*); group g
// covers channels [g * GS, (g + 1) * GS), GS (quant.Format.GroupSize) a specialization constant.
// A sequence's keys have their scales at the tokens of their codes (t), unless the table gives
// each sequence's first token of the scales (SEQ_SCALESTART, kvScaleLayout): the sequences of a
// quantized KV cache, whose codes and scales lie in two caches' regions, at different tokens.
// Paged (FLAG_PAGED and KV_PAGED: a paged quantized KV cache's views), the codes are found
// through their block table as paged float K and V are (kRow, vRow), and the scales through
// their own (their cache's pages are not the codes'): K's and V's scales share it, at the word
// SEQ_SCALEPAGES names, its tokens per page at word SEQ_SCALEPAGES + 1, and scale token t is row
// tableRow(table, P, t) of the scales' buffers (their offsets 0, their strides the rows'), t
// counted as above.
//
// Queries (QMODE): as DTYPE (Q_FLOAT); as DTYPE times the RoPE-aware query scales of their KV
// head, fp32 [hk][D] at binding 11 from the table's SEQ_QKEYSCALE (Q_SCALED: quant.KeyScales.Q,
// one float32 multiplication as quant.KeyScales.ScaleQueries does); or FP8 E4M3 codes (Q_FP8),
// four per word at binding 0 as K's, with one bf16 scale per (token, head) at binding 10.
#ifndef QUANT_GLSL
#define QUANT_GLSL

layout(constant_id = 6) const uint QMODE = 0;
layout(constant_id = 7) const uint GS = 128; // channels per scale group
// KV_PAGED: the codes and scales are a paged cache's (FLAG_PAGED), scales through their own block
// table. A constant, so that the other pipelines carry none of the paged scale lookup (which
// cost the H100's INT8 kernel 10% in registers and time even where not taken).
layout(constant_id = 8) const uint KV_PAGED = 0;

const uint Q_FLOAT = 0u;
const uint Q_SCALED = 1u;
const uint Q_FP8 = 2u;

#if defined(KV_INT8)
const uint BITS = 8u;
#elif defined(KV_INT4)
const uint BITS = 4u;
#endif
const uint PER = 32u / BITS; // codes per word
const uint WORDS = D / PER;  // words per row

layout(std430, binding = 8) readonly buffer KScales { uint kScales[]; };
layout(std430, binding = 9) readonly buffer VScales { uint vScales[]; };
layout(std430, binding = 10) readonly buffer QScales { uint qScales[]; };
layout(std430, binding = 11) readonly buffer QKeyScales { float qKeyScales[]; };

// Words of the sequence table from the chunk size's on (attention's seqKScale, ... count from
// the word after it).
const uint SEQ_KSCALE = 1u;    // off, tokenStride, headStride of K's scales
const uint SEQ_VSCALE = 4u;    // ... of V's
const uint SEQ_QSCALE = 7u;    // ... of the FP8 queries'
const uint SEQ_QKEYSCALE = 10u; // offset of the query scales
const uint SEQ_SCALESTART = 11u; // the word of the sequences' first tokens of K's and V's scales, or 0
const uint SEQ_SCALEPAGES = 12u; // paged: the word of the scales' block table; then its tokens per page

uint seqWord(uint i) { return cuSeqlens[2u * (pc.nSeq + 1u) + i]; }

// bf16Half is the bf16 at element e of a buffer of bf16 pairs, as float32 (exact).
float bf16Half(uint word, uint e) { return uintBitsToFloat(((word >> (16u * (e & 1u))) & 0xffffu) << 16); }

// ScaleLayout is where a tensor's scales are: element off + t * ts + h * hs + g; paged (pt not 0),
// element off + tableRow(table, pt, t + shift) * ts + h * hs + g.
struct ScaleLayout {
	uint off, ts, hs;
	uint table, pt, shift;
};

ScaleLayout scaleLayout(uint at) { return ScaleLayout(seqWord(at), seqWord(at + 1u), seqWord(at + 2u), 0u, 0u, 0u); }

// kvScaleLayout is the layout of K's (at = SEQ_KSCALE) or V's (SEQ_VSCALE) scales as sequence b
// of the dispatch, whose keys are tokens s.kStart.. of the codes, reads them by the codes' tokens:
// where word SEQ_SCALESTART is not 0, key i has its scales at token start + i of the scales, start
// being word b of the table from that word on (K's and V's alike), so the offset moves by
// start - s.kStart tokens, or paged the token does (in uint arithmetic, which wraps: the index
// comes out exact). Paged, the scales' block table is SEQ_SCALEPAGES's.
ScaleLayout kvScaleLayout(uint at, Seq s, uint b) {
	ScaleLayout l = scaleLayout(at);
	if (KV_PAGED != 0u) {
		l.table = seqWord(SEQ_SCALEPAGES);
		l.pt = seqWord(SEQ_SCALEPAGES + 1u);
	}
	uint starts = seqWord(SEQ_SCALESTART);
	if (starts != 0u) {
		uint shift = cuSeqlens[starts + b] - s.kStart;
		if (KV_PAGED != 0u)
			l.shift = shift;
		else
			l.off += shift * l.ts;
	}
	return l;
}

uint scaleIndex(ScaleLayout l, uint t, uint h, uint g) {
	if (KV_PAGED != 0u && l.pt != 0u) return l.off + tableRow(l.table, l.pt, t + l.shift) * l.ts + h * l.hs + g;
	return l.off + t * l.ts + h * l.hs + g;
}

float kScale(ScaleLayout l, uint t, uint h, uint g) {
	uint e = scaleIndex(l, t, h, g);
	return bf16Half(kScales[e >> 1], e);
}

float vScale(ScaleLayout l, uint t, uint h, uint g) {
	uint e = scaleIndex(l, t, h, g);
	return bf16Half(vScales[e >> 1], e);
}

// KV_SIGNS has the sign bit of every field of a word set: a word xor KV_SIGNS has every field's
// sign bit flipped, for kvValueFlipped.
const uint KV_SIGNS = BITS == 8u ? 0x80808080u : 0x88888888u;

// kvValueFlipped is kvValue of a word whose fields' sign bits were flipped beforehand (word xor
// KV_SIGNS): one logic operation a word instead of one a value.
float kvValueFlipped(uint flipped, uint i) {
	const uint BIAS = 1u << (BITS - 1u);
	uint biased = (flipped >> (BITS * i)) & ((1u << BITS) - 1u);
	return uintBitsToFloat(0x4b000000u | biased) - float(0x800000u + BIAS);
}

// kvValue is the value field i of a K or V word stands for, before scaling: the sign-extended
// integer, exactly. It is built from bits rather than converted: the field with its sign bit
// flipped (the integer plus 2^(BITS-1), 0 to 2^BITS - 1) as the low mantissa bits of 2^23, less
// 2^23 + 2^(BITS-1). A shift, one logic operation and an addition, all exact, where an
// integer-to-float conversion runs on some GPUs (the H100) at an eighth of the rate of
// additions, and a decode step converts every K and V value it reads.
float kvValue(uint word, uint i) { return kvValueFlipped(word ^ KV_SIGNS, i); }

#include "e4m3.glsl"

// queryAt is dim d of query token t, head h, dequantized or scaled as QMODE says.
float queryAt(uint t, uint h, uint d) {
	if (QMODE == Q_FP8) {
		uint w = qData[pc.qOff + t * pc.qTokenStride + h * pc.qHeadStride + d / 4u];
		ScaleLayout l = scaleLayout(SEQ_QSCALE);
		uint e = scaleIndex(l, t, h, 0u);
		return e4m3Value((w >> (8u * (d % 4u))) & 0xffu) * bf16Half(qScales[e >> 1], e);
	}
	float x = qAt(t, h, d);
	if (QMODE == Q_SCALED) x *= qKeyScales[seqWord(SEQ_QKEYSCALE) + kvHead(h) * D + d];
	return x;
}

#endif
