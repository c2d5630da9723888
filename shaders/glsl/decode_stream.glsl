// Subgroup tier of decode.comp: a workgroup is one subgroup that streams its chunk's keys and
// values from global memory into registers, with no shared-memory tiles and no barriers. A decode
// step reads each K/V byte once and does little arithmetic per byte, so memory bandwidth bounds
// it; this layout keeps several wide loads in flight per lane.
//
// Lanes and keys: every storage type is read in vectors of 8 values, VW 32-bit words (fp32 8,
// fp16 and bf16 4, INT8 2, INT4 1), so a lane holds the same 8 dims of a key whatever the type
// and sums in the same order. A key row of ROWW words is VPR vectors; LPK lanes share a key (the
// least power of two >= VPR, at most SG), each lane reading VPL of its vectors, so the subgroup
// reads KPS = SG / LPK keys at once and a step reads BC keys (U = BC / KPS per lane). A lane
// keeps q of its dims for the block's BR rows; the dot products of a key are summed across its
// LPK lanes with shuffles; each lane group keeps its own running max, sum and output per row
// (no subgroup operation per step), merged across groups at the end as merge.comp merges
// partials.
//
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

// value is value e (< EPV) of a vector; a quantized value is scaled by its group's scale (one
// float32 multiplication, as quant.glsl specifies).
float value(Vec x, uint e, float scale) {
#ifdef KV_QUANT
	return kvValue(word(x, e / PER), e % PER) * scale;
#else
	if (DTYPE == DT_F32) return uintBitsToFloat(word(x, e));
	uint w = word(x, e >> 1);
	if (DTYPE == DT_F16) return unpackHalf2x16(w >> (16u * (e & 1u))).x;
	return uintBitsToFloat((e & 1u) != 0u ? w & 0xffff0000u : w << 16);
#endif
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

	float q[BR][EL], o[BR][EL], m[BR], l[BR];
	ivec2 keys[BR];
	[[unroll]] for (uint r = 0u; r < BR; r++) {
		bool valid = rowValid(k, r);
		[[unroll]] for (uint i = 0u; i < VPL; i++) {
			[[unroll]] for (uint e = 0u; e < EPV; e++) {
				uint d = (part + i * LPK) * EPV + e;
				q[r][i * EPV + e] = valid && d < D ? rowQuery(k, r, d) * pc.scale : 0.0;
				o[r][i * EPV + e] = 0.0;
			}
		}
		keys[r] = valid ? rowKeys(k, r) : ivec2(0);
		m[r] = NEG_INF;
		l[r] = 0.0;
	}

	// Chunk split of n takes the tiles t == split (mod n) of the keys the block sees.
	int n = int(gl_NumWorkGroups.x), bc = int(BC);
	int t0 = k.keys.x / bc;
	t0 += (int(k.split) - t0 % n + n) % n;
	for (int k0 = t0 * bc; k0 < k.keys.y; k0 += n * bc) {
		// Issue every load of the step before using any.
		Vec kv[U][VPL], vv[U][VPL];
		float ks[U][VPL], vs[U][VPL];
		[[unroll]] for (uint u = 0u; u < U; u++) {
			int key = k0 + int(u * KPS + slot);
			bool inStep = key < k.kEnd && u * KPS + slot < BC;
			uint t = k.s.kStart + uint(key);
			uint kb = rowWord(0u, t, k.kvh), vb = rowWord(1u, t, k.kvh);
			[[unroll]] for (uint i = 0u; i < VPL; i++) {
				uint vi = part + i * LPK;
				bool load = inStep && vi < VPR;
				kv[u][i] = load ? loadVec(0u, kb, vi) : Vec(uvec4(0u), uvec4(0u));
				vv[u][i] = load ? loadVec(1u, vb, vi) : Vec(uvec4(0u), uvec4(0u));
#ifdef KV_QUANT
				uint g = vi * EPV / GS;
				ks[u][i] = load ? kScale(kScaleAt, t, k.kvh, g) : 0.0;
				vs[u][i] = load ? vScale(vScaleAt, t, k.kvh, g) : 0.0;
#else
				ks[u][i] = 1.0;
				vs[u][i] = 1.0;
#endif
			}
		}
		// Scores: each lane's share of the dot product, summed over the key's lanes.
		float s[U][BR];
		[[unroll]] for (uint u = 0u; u < U; u++) {
			int key = k0 + int(u * KPS + slot);
			[[unroll]] for (uint r = 0u; r < BR; r++) {
				float acc = 0.0;
				[[unroll]] for (uint i = 0u; i < VPL; i++)
					[[unroll]] for (uint e = 0u; e < EPV; e++) acc += q[r][i * EPV + e] * value(kv[u][i], e, ks[u][i]);
				[[unroll]] for (uint off = LPK / 2u; off > 0u; off /= 2u) acc += subgroupShuffleXor(acc, off);
				bool sees = key >= keys[r].x && key < keys[r].y && u * KPS + slot < BC;
				s[u][r] = sees ? score(acc) : NEG_INF;
			}
		}
		// Online softmax of each lane group over its keys: no subgroup operation per step.
		[[unroll]] for (uint r = 0u; r < BR; r++) {
			float mx = NEG_INF;
			bool nan = false;
			[[unroll]] for (uint u = 0u; u < U; u++) {
				mx = max(mx, s[u][r]);
				nan = nan || isnan(s[u][r]);
			}
			float alpha = raiseMax(m[r], mx, nan);
			float sum = 0.0;
			[[unroll]] for (uint j = 0u; j < EL; j++) o[r][j] *= alpha;
			[[unroll]] for (uint u = 0u; u < U; u++) {
				float p = prob(s[u][r], m[r]);
				sum += p;
				// A key the row does not see (p is 0) adds nothing, even a NaN or Inf value.
				if (p != 0.0) {
					[[unroll]] for (uint i = 0u; i < VPL; i++)
						[[unroll]] for (uint e = 0u; e < EPV; e++) o[r][i * EPV + e] += p * value(vv[u][i], e, vs[u][i]);
				}
			}
			l[r] = l[r] * alpha + sum;
		}
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
