// Subgroup tier of decode.comp: each subgroup (of the WG / SG of a workgroup) streams its chunk's
// keys and values from global memory into registers, with no shared-memory tiles and no
// workgroup barriers (the queries alone are in shared memory, written once by the subgroup for
// itself: held in registers beside the rest, they made the compiler spill). A decode step reads
// each K/V byte once and does little arithmetic per byte, so memory bandwidth bounds it; this
// layout keeps several wide loads in flight per lane.
//
// Lanes and keys: every storage type is read in vectors of 8 values, VW 32-bit words (fp32 8,
// fp16 and bf16 4, INT8 2, INT4 1), so a lane holds the same 8 dims of a key whatever the type
// and sums in the same order. A key row of ROWW words is VPR vectors; LPK lanes share a key (the
// least power of two >= VPR, at most SG), each lane reading VPL of its vectors, so the subgroup
// reads KPS = SG / LPK keys at once and a step reads BC keys (U = BC / KPS per lane). A lane
// reads q of its dims for the block's BR rows from qShared; the dot products of a key are summed
// across its LPK lanes; each lane group keeps its own running max, sum and output per row,
// merged across groups at the end as merge.comp merges partials.
//
// Scores of a step: a lane holds partial dot products of the step's NP = U * BR pairs (its key
// u, row r), pair u * BR + r (BR is a power of two: a pair's row is its low bits). They are
// summed across the key's LPK lanes by a transposing reduction: at each level a lane keeps half
// of its list and adds the other half of its partner's, so after log2(LPK) levels it holds the
// complete sums of NOWN pairs (a power of two) instead of every lane holding all of them. Each
// lane scores the pairs it owns, the row maxima are taken across the lanes that own the same
// rows, each lane exponentiates its pairs once, and every lane of the key reads the
// probabilities back for P.V. At 2 keys a lane and 4 rows with 16 lanes a key, that is 21
// shuffles a step instead of 32 and 5 exponentials instead of 12.

// FLAG_VEC: K's and V's rows start on multiples of LW = min(VW, 4) words and ROWW is one too, so
// a vector is read with uvec4 / uvec2 loads (the host checks the offsets and strides); otherwise
// word by word.
//
// Every loop but the one over keys is unrolled: its arrays then live in registers.
//
// Include after decode.comp's row functions (attend_scalar.glsl lists them); the kernel enables
// GL_KHR_shader_subgroup_shuffle and GL_EXT_control_flow_attributes.

layout(std430, binding = 1) readonly buffer K4 { uvec4 k4Data[]; };
layout(std430, binding = 2) readonly buffer V4 { uvec4 v4Data[]; };
layout(std430, binding = 1) readonly buffer K2 { uvec2 k2Data[]; };
layout(std430, binding = 2) readonly buffer V2 { uvec2 v2Data[]; };

const uint FLAG_VEC = 4u;

#ifdef KV_QUANT
const uint EPW = PER;                             // values per word
#else
const uint EPW = DTYPE == DT_F32 ? 1u : 2u;
#endif
const uint EPV = 8u;                              // values per vector
const uint VW = EPV / EPW;                        // words per vector
const uint LW = VW < 4u ? VW : 4u;                // words per load
const uint ROWW = (D + EPW - 1u) / EPW;           // words per key row
const uint VPR = (ROWW + VW - 1u) / VW;           // vectors per key row
const uint LPK0 = VPR <= 1u ? 1u : VPR <= 2u ? 2u : VPR <= 4u ? 4u : VPR <= 8u ? 8u : VPR <= 16u ? 16u : VPR <= 32u ? 32u : 64u;
const uint LPK = LPK0 < SG ? LPK0 : SG;           // lanes per key
const uint VPL = (VPR + LPK - 1u) / LPK;          // vectors per lane
const uint KPS = SG / LPK;                        // keys the subgroup reads at once
const uint U = (BC + KPS - 1u) / KPS;             // keys per lane per step
const uint EL = VPL * EPV;                        // values per lane and row

// The block's queries, scaled: BR rows of VPR vectors (two vec4 each) a subgroup, read from
// shared memory at every step rather than held in registers.
shared vec4 qShared[(WG / SG) * BR * VPR * 2u];

// The transposing reduction of the scores (above): pairs padded to PP, a power of two; T levels
// transpose (log2 of the lesser of LPK and PP), the other log2(LPK) - T sum whole lists; a lane
// then owns NOWN pairs.
const uint NP = U * BR;
const uint PP = NP <= 1u ? 1u : NP <= 2u ? 2u : NP <= 4u ? 4u : NP <= 8u ? 8u : NP <= 16u ? 16u : NP <= 32u ? 32u :
	NP <= 64u ? 64u : NP <= 128u ? 128u : NP <= 256u ? 256u : NP <= 512u ? 512u : NP <= 1024u ? 1024u : 2048u;
const uint LOG_LPK = LPK <= 1u ? 0u : LPK <= 2u ? 1u : LPK <= 4u ? 2u : LPK <= 8u ? 3u : LPK <= 16u ? 4u : LPK <= 32u ? 5u : 6u;
const uint LOG_PP = PP <= 1u ? 0u : PP <= 2u ? 1u : PP <= 4u ? 2u : PP <= 8u ? 3u : PP <= 16u ? 4u : PP <= 32u ? 5u :
	PP <= 64u ? 6u : PP <= 128u ? 7u : PP <= 256u ? 8u : PP <= 512u ? 9u : PP <= 1024u ? 10u : 11u;
const uint T = LOG_LPK < LOG_PP ? LOG_LPK : LOG_PP;
const uint NOWN = PP >> T;                         // pairs a lane owns
const uint ROWS_SPLIT = NOWN < BR ? 1u : 0u;       // a lane owns part of one key's rows (else whole keys)

// ownerPart is the place in its key of the lane that owns pair i (and i's NOWN-aligned block):
// bit LPK >> (l + 1) of it says which half the lane kept at level l. Among lanes that own the
// same pairs (levels past T), the first.
uint ownerPart(uint i) {
	uint part = 0u;
	[[unroll]] for (uint l = 0u; l < T; l++)
		if ((i & (PP >> (l + 1u))) != 0u) part |= LPK >> (l + 1u);
	return part;
}

// ownedBase is the first pair that the lane at place part of its key owns.
uint ownedBase(uint part) {
	uint base = 0u;
	[[unroll]] for (uint l = 0u; l < T; l++)
		if ((part & (LPK >> (l + 1u))) != 0u) base |= PP >> (l + 1u);
	return base;
}

// Vec is one vector of a key row as it was read: its VW words, w[0..3] in lo, w[4..7] in hi.
struct Vec {
	uvec4 lo, hi;
};

// word is word i of a vector.
uint word(Vec x, uint i) { return i < 4u ? x.lo[i] : x.hi[i - 4u]; }

// rowWord is the first word of row (token t, head h) of K (which 0) or V (1) (tensors.glsl's
// kRow and vRow).
uint rowWord(uint which, uint t, uint h) {
	uint e = which == 0u ? kRow(t, h) : vRow(t, h);
#ifdef KV_QUANT
	return e; // quant.glsl: K and V offsets and strides are in words
#else
	return DTYPE == DT_F32 ? e : e >> 1;
#endif
}

// loadWords reads LW words of K or V at word a (a multiple of LW under FLAG_VEC), those at or
// past word end as 0.
uvec4 loadWords(uint which, uint a, uint end) {
	if ((pc.flags & FLAG_VEC) != 0u) {
		if (a >= end) return uvec4(0u);
		if (LW == 4u) return which == 0u ? k4Data[a / 4u] : v4Data[a / 4u];
		if (LW == 2u) return uvec4(which == 0u ? k2Data[a / 2u] : v2Data[a / 2u], 0u, 0u);
	}
	uvec4 y = uvec4(0u);
	[[unroll]] for (uint i = 0u; i < LW; i++)
		if (a + i < end) y[i] = which == 0u ? kData[a + i] : vData[a + i];
	return y;
}

// loadVec reads vector vi of the row that starts at word base of K or V; words past the row are 0.
Vec loadVec(uint which, uint base, uint vi) {
	uint a = base + vi * VW, end = base + ROWW;
	Vec x = Vec(loadWords(which, a, end), uvec4(0u));
	if (VW == 8u) x.hi = loadWords(which, a + 4u, end);
	return x;
}

// nonFinite reports whether a vector as read holds a NaN or an infinity (a few integer
// operations a word), or for quantized values a scale that may make one (NaN, Inf, or so large
// that a code times it may overflow: one comparison). fp16 and bf16 test each half of a word at
// once: a half's exponent field is all ones exactly when adding one to its lowest bit carries
// into the half's top bit.
bool nonFinite(Vec x, float scale) {
#ifdef KV_QUANT
	return !(abs(scale) < 1e30);
#else
	uvec4 bad;
	if (DTYPE == DT_F32) {
		const uvec4 E = uvec4(0x7f800000u);
		bad = uvec4(equal(x.lo & E, E)) | uvec4(equal(x.hi & E, E));
	} else if (DTYPE == DT_F16) {
		bad = ((x.lo & 0x7c007c00u) + 0x04000400u) & 0x80008000u;
	} else {
		bad = ((x.lo & 0x7f807f80u) + 0x00800080u) & 0x80008000u;
	}
	return any(notEqual(bad, uvec4(0u)));
#endif
}

// value is value e (< EPV) of a vector; a quantized value is scaled by its group's scale (one
// float32 multiplication, as quant.glsl specifies).
float value(Vec x, uint e, float scale) {
#ifdef KV_QUANT
	return kvValueFlipped(word(x, e / PER), e % PER) * scale; // main flipped the sign bits
#else
	if (DTYPE == DT_F32) return uintBitsToFloat(word(x, e));
	uint w = word(x, e >> 1);
	if (DTYPE == DT_F16) {
		vec2 h = unpackHalf2x16(w); // both halves of the word at once: one unpack for e and e ^ 1
		return (e & 1u) != 0u ? h.y : h.x;
	}
	return uintBitsToFloat((e & 1u) != 0u ? w & 0xffff0000u : w << 16);
#endif
}

// accumulate adds the step's P.V to the outputs: probability p[r][u] of the lane's key u for row
// r times the key's values; with skipZeros, only where p is not 0.
void accumulate(inout float o[BR][EL], float p[BR][U], Vec vv[U][VPL], float vs[U][VPL], bool skipZeros) {
	[[unroll]] for (uint r = 0u; r < BR; r++) {
		[[unroll]] for (uint u = 0u; u < U; u++) {
			if (skipZeros && p[r][u] == 0.0) continue;
			[[unroll]] for (uint i = 0u; i < VPL; i++)
				[[unroll]] for (uint e = 0u; e < EPV; e++) o[r][i * EPV + e] += p[r][u] * value(vv[u][i], e, vs[u][i]);
		}
	}
}

#ifdef KV_QUANT
#define SCALE_PARAMS , ScaleLayout kScaleAt, ScaleLayout vScaleAt
#define SCALE_ARGS , kScaleAt, vScaleAt
#else
#define SCALE_PARAMS
#define SCALE_ARGS
#endif

// loadStep reads the keys and values of the step from key k0 (none at or past kEnd, which is at
// least 1) that the lane holds, with their scales. A key it does not read takes the row address
// of key kEnd - 1 (a paged K/V's row comes from the block table, which ends with the sequence's
// pages): a clamp rather than a branch, which cost the fp16 kernel 2% of its time on the H100.
void loadStep(Block k, int k0, uint slot, uint part SCALE_PARAMS, out Vec kv[U][VPL], out Vec vv[U][VPL],
	out float ks[U][VPL], out float vs[U][VPL]) {
	[[unroll]] for (uint u = 0u; u < U; u++) {
		int key = k0 + int(u * KPS + slot);
		bool inStep = key < k.kEnd && u * KPS + slot < BC;
		uint t = k.s.kStart + uint(min(key, k.kEnd - 1));
		uint kb = rowWord(0u, t, k.kvh), vb = rowWord(1u, t, k.kvh);
		[[unroll]] for (uint i = 0u; i < VPL; i++) {
			uint vi = part + i * LPK;
			bool load = inStep && vi < VPR;
			kv[u][i] = load ? loadVec(0u, kb, vi) : Vec(uvec4(0u), uvec4(0u));
			vv[u][i] = load ? loadVec(1u, vb, vi) : Vec(uvec4(0u), uvec4(0u));
#ifdef KV_QUANT
			// For value: sign bits flipped once a word (VW <= 2 words, all in lo); zeros still
			// read as 0.
			kv[u][i].lo ^= uvec4(KV_SIGNS);
			vv[u][i].lo ^= uvec4(KV_SIGNS);
			uint g = vi * EPV / GS;
			ks[u][i] = load ? kScale(kScaleAt, t, k.kvh, g) : 0.0;
			vs[u][i] = load ? vScale(vScaleAt, t, k.kvh, g) : 0.0;
#else
			ks[u][i] = 1.0;
			vs[u][i] = 1.0;
#endif
		}
	}
}

void main() {
	Block k = block();
	if (blockIdle(k)) return; // uniform across the workgroup
	uint lane = gl_SubgroupInvocationID;
	// Sizes assume SG lanes; a driver that runs another width gets NaN, never a wrong answer.
	bool widthOK = gl_SubgroupSize == SG;
	uint slot = lane / LPK, part = lane % LPK; // the lane's key of each KPS, its place in the key
#ifdef KV_QUANT
	ScaleLayout kScaleAt = kvScaleLayout(SEQ_KSCALE, k.s, gl_WorkGroupID.z);
	ScaleLayout vScaleAt = kvScaleLayout(SEQ_VSCALE, k.s, gl_WorkGroupID.z);
#endif

	float o[BR][EL], m[BR], l[BR];
	ivec2 keys[BR];
	uint qBase = subgroupIndex() * BR * VPR * 2u;
	[[unroll]] for (uint r = 0u; r < BR; r++) {
		bool valid = rowValid(k, r);
		[[unroll]] for (uint i = 0u; i < VPL; i++) {
			float x[EPV];
			[[unroll]] for (uint e = 0u; e < EPV; e++) {
				uint d = (part + i * LPK) * EPV + e;
				x[e] = valid && d < D ? rowQuery(k, r, d) * pc.scale : 0.0;
				o[r][i * EPV + e] = 0.0;
			}
			uint vi = part + i * LPK;
			if (slot == 0u && vi < VPR) {
				qShared[qBase + (r * VPR + vi) * 2u] = vec4(x[0], x[1], x[2], x[3]);
				qShared[qBase + (r * VPR + vi) * 2u + 1u] = vec4(x[4], x[5], x[6], x[7]);
			}
		}
		keys[r] = valid ? rowKeys(k, r) : ivec2(0);
		m[r] = NEG_INF;
		l[r] = 0.0;
	}
	subgroupMemoryBarrierShared();
	subgroupBarrier();

	// Every load of a step is issued before any is used; with PREFETCH, one step ahead: the next
	// step's loads are in flight while this step's arithmetic runs.
	Vec kv[U][VPL], vv[U][VPL], kn[U][VPL], vn[U][VPL]; // the step's, the next step's
	float ks[U][VPL], vs[U][VPL], ksn[U][VPL], vsn[U][VPL];
	int stride = tileStride();
	if (PREFETCH && firstTile(k) < k.kEnd) loadStep(k, firstTile(k), slot, part SCALE_ARGS, kn, vn, ksn, vsn);
	for (int k0 = firstTile(k); k0 < k.keys.y; k0 += stride) {
		if (PREFETCH) {
			[[unroll]] for (uint u = 0u; u < U; u++) {
				[[unroll]] for (uint i = 0u; i < VPL; i++) {
					kv[u][i] = kn[u][i];
					vv[u][i] = vn[u][i];
					ks[u][i] = ksn[u][i];
					vs[u][i] = vsn[u][i];
				}
			}
			loadStep(k, k0 + stride, slot, part SCALE_ARGS, kn, vn, ksn, vsn);
		} else {
			loadStep(k, k0, slot, part SCALE_ARGS, kv, vv, ks, vs);
		}
		// Scores: each lane's share of every pair's dot product, then the transposing reduction.
		// A row's queries are read from shared memory for the step's keys, one row at a time.
		float acc[PP];
		[[unroll]] for (uint i = 0u; i < PP; i++) acc[i] = 0.0;
		[[unroll]] for (uint r = 0u; r < BR; r++) {
			[[unroll]] for (uint i = 0u; i < VPL; i++) {
				uint vi = part + i * LPK;
				bool inRow = vi < VPR; // lanes past the row hold zeros of q and K
				vec4 qa = inRow ? qShared[qBase + (r * VPR + vi) * 2u] : vec4(0.0);
				vec4 qb = inRow ? qShared[qBase + (r * VPR + vi) * 2u + 1u] : vec4(0.0);
				float qv[EPV] = float[EPV](qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w);
				[[unroll]] for (uint u = 0u; u < U; u++) {
					[[unroll]] for (uint e = 0u; e < EPV; e++)
						acc[u * BR + r] += qv[e] * value(kv[u][i], e, ks[u][i]);
				}
			}
		}
		[[unroll]] for (uint lv = 0u; lv < T; lv++) {
			uint off = LPK >> (lv + 1u), h = PP >> (lv + 1u);
			bool upper = (part & off) != 0u;
			[[unroll]] for (uint i = 0u; i < h; i++) {
				float keep = upper ? acc[h + i] : acc[i], give = upper ? acc[i] : acc[h + i];
				acc[i] = keep + subgroupShuffleXor(give, off);
			}
		}
		[[unroll]] for (uint off = LPK >> (T + 1u); off > 0u; off /= 2u) acc[0] += subgroupShuffleXor(acc[0], off);

		// The owned pairs' scores and their rows' maxima over the step's keys of the lane group.
		uint base = ownedBase(part);
		float sOwn[NOWN], mOwn[NOWN];
		[[unroll]] for (uint j = 0u; j < NOWN; j++) {
			uint i = base + j, u = i / BR, r = i % BR;
			int key = k0 + int(u * KPS + slot);
			ivec2 seen = ivec2(0);
			[[unroll]] for (uint rr = 0u; rr < BR; rr++)
				if (rr == r) seen = keys[rr];
			bool sees = i < NP && key >= seen.x && key < seen.y && u * KPS + slot < BC;
			sOwn[j] = sees ? score(acc[j]) : NEG_INF;
			mOwn[j] = sOwn[j];
		}
		float mx[BR];
		if (ROWS_SPLIT != 0u) {
			// Pair i's row is its low bits and its key the high ones: the lanes owning the other
			// keys of a row differ in the bits of the first log2(PP / BR) levels.
			[[unroll]] for (uint lv = 0u; (PP >> (lv + 1u)) >= BR && lv < T; lv++)
				[[unroll]] for (uint j = 0u; j < NOWN; j++) mOwn[j] = maxNaN(mOwn[j], subgroupShuffleXor(mOwn[j], LPK >> (lv + 1u)));
			[[unroll]] for (uint r = 0u; r < BR; r++)
				mx[r] = subgroupShuffle(mOwn[r % NOWN], slot * LPK + ownerPart(r - r % NOWN));
		} else {
			// A lane owns whole keys (every row of NOWN / BR keys): a row's maximum is over its
			// own pairs, then across the key's lanes.
			[[unroll]] for (uint r = 0u; r < BR; r++) {
				mx[r] = NEG_INF;
				[[unroll]] for (uint j = r; j < NOWN; j += BR) mx[r] = maxNaN(mx[r], sOwn[j]);
				// Lanes that differ only in the bits past level T hold the same pairs.
				[[unroll]] for (uint lv = 0u; lv < T; lv++) mx[r] = maxNaN(mx[r], subgroupShuffleXor(mx[r], LPK >> (lv + 1u)));
			}
		}
		float alpha[BR];
		[[unroll]] for (uint r = 0u; r < BR; r++) alpha[r] = raiseMax(m[r], mx[r], isnan(mx[r]));
		// Exponentials of the owned pairs, read back by every lane of the key.
		float pOwn[NOWN];
		[[unroll]] for (uint j = 0u; j < NOWN; j++) {
			uint r = (base + j) % BR;
			float mr = 0.0;
			[[unroll]] for (uint rr = 0u; rr < BR; rr++)
				if (rr == r) mr = m[rr];
			pOwn[j] = prob(sOwn[j], mr);
		}
		// Rescale the outputs only in steps where some row's maximum rose: elsewhere every alpha
		// is 1 (exp(0)), and multiplying by it would change nothing.
		bool rose = false;
		[[unroll]] for (uint r = 0u; r < BR; r++) rose = rose || alpha[r] != 1.0;
		if (subgroupAny(rose)) {
			[[unroll]] for (uint r = 0u; r < BR; r++)
				[[unroll]] for (uint j = 0u; j < EL; j++) o[r][j] *= alpha[r];
		}
		float p[BR][U];
		[[unroll]] for (uint r = 0u; r < BR; r++) {
			float sum = 0.0;
			[[unroll]] for (uint u = 0u; u < U; u++) {
				uint i = u * BR + r;
				p[r][u] = subgroupShuffle(pOwn[i % NOWN], slot * LPK + ownerPart(i - i % NOWN));
				sum += p[r][u];
			}
			l[r] = l[r] * alpha[r] + sum;
		}
		// A key a row does not see (p is 0) must add nothing, even a NaN or Inf value; where the
		// step's values are all finite, p * v is then +-0, which leaves o as it was (but for the
		// sign of a zero o), so P.V needs no test of p (a branch per key and row, which made the
		// step slower).
		bool nonFiniteV = false;
		[[unroll]] for (uint u = 0u; u < U; u++)
			[[unroll]] for (uint i = 0u; i < VPL; i++) nonFiniteV = nonFiniteV || nonFinite(vv[u][i], vs[u][i]);
		if (subgroupAny(nonFiniteV)) accumulate(o, p, vv, vs, true);
		else accumulate(o, p, vv, vs, false);
	}

	// Merge the lane groups' softmax statistics and outputs (lanes with the same part hold the
	// same dims of other keys); every lane computes the same sums, in the same order.
	[[unroll]] for (uint r = 0u; r < BR; r++) {
		[[unroll]] for (uint off = LPK; off < SG; off *= 2u) {
			float m2 = subgroupShuffleXor(m[r], off), l2 = subgroupShuffleXor(l[r], off);
			float mNew = maxNaN(m[r], m2);
			// Weights as merge.comp's: a group that saw no key (or weighs 0) adds nothing.
			float a = rescale(m[r], mNew), b = rescale(m2, mNew);
			if (mNew == NEG_INF) a = b = 0.0;
			[[unroll]] for (uint j = 0u; j < EL; j++) {
				float o2 = subgroupShuffleXor(o[r][j], off);
				o[r][j] = weigh(a, o[r][j]) + weigh(b, o2);
			}
			l[r] = l[r] * a + l2 * b;
			m[r] = mNew;
		}
	}
	[[unroll]] for (uint r = 0u; r < BR; r++) {
		if (!rowValid(k, r)) continue;
		float mm = m[r], ll = l[r];
		float inv = ll == 0.0 ? 0.0 : 1.0 / ll;
		if (!widthOK) mm = ll = inv = uintBitsToFloat(0x7fc00000u);
		if (slot == 0u && rowWritesO(k, ll)) {
			[[unroll]] for (uint i = 0u; i < VPL; i++) {
				[[unroll]] for (uint e = 0u; e < EPV; e += 2u) {
					uint d = (part + i * LPK) * EPV + e;
					if (d < D) storeRow(k, r, d, o[r][i * EPV + e] * inv, o[r][i * EPV + e + 1u] * inv);
				}
			}
		}
		if (lane == 0u) storeRowLSE(k, r, mm, ll);
	}
}
