// Cooperative-matrix tier of flash_fwd.comp and decode.comp (VK_KHR_cooperative_matrix, ELEM
// matrices, elem.glsl; fp32 accumulation). The workgroup is NSG = WG / SG subgroups; subgroup g
// owns rows [16g, 16g + 16) of the block (BR = 16 NSG). Q.K^T and P.V run on 16x16x16 matrices, O
// stays in accumulator matrices; the softmax runs on the scores staged in shared memory, LPR = SG
// / 16 lanes per row. Where a row's output must be touched element-wise (rescaling, the final
// store), its 16x16 blocks pass through shared memory: lane L handles EPL = 256 / SG elements of
// row L / LPR.
//
// The including kernel maps the rows as for attend_scalar.glsl (block, blockIdle, rowValid,
// rowQuery, rowKeys, rowWritesO, storeRow, storeRowLSE; Block has the fields s, its sequence, kvh,
// its kv head, keys and kEnd) and says which tiles of BC keys the block reads:
//   int firstTile(Block k)   the first key of the first tile
//   int tileStride()         keys from the first of one tile to the first of the next
// tiles that start below k.keys.y; keys at or past k.kEnd read as zero.
//
// Quantized K and V (KV_QUANT, decode.comp; quant.glsl): the tiles hold the codes as ELEM values
// (exact: at most 8 bits), and the scales of the tile's keys are staged beside them. Scores are
// the sum over a row's QG scale groups of each group's Q.K^T block times the key's K scale. For
// P.V, the probabilities of group g enter the matrices as p * (V scale / ref), ref being the
// largest V scale magnitude in that group of the tile's keys that the subgroup's rows see (so
// they stay within e^SLACK), and the tile's product is added to O times ref. A tile with a V
// scale that is NaN or infinite, or (per subgroup) whose seen V scales span more than 2^12,
// takes the element-wise path, on the dequantized values. Queries enter the matrices as fp16, as
// the float kernel's do; FP8 and scaled ones, which fp16 does not hold exactly, are refused by
// the host (attention's decodeKernel.wideQueries).

const uint TM = 16;            // rows, columns and depth of every matrix block
const uint NSG = WG / SG;
const uint LPR = SG / TM;      // lanes per row
const uint EPL = TM * TM / SG; // elements of a 16x16 block per lane
const uint KPL = BC / LPR;     // keys per lane in the softmax
const uint DB = D / TM;        // 16-wide blocks of the head dim
const uint KB = BC / TM;       // 16-key blocks of a tile
// Row strides of the staged K and V, scores, probabilities and P.V blocks, padded so the lanes of
// a subgroup reading one column fall in different banks; each keeps rows 16-byte aligned, as
// matrix loads and stores need.
const uint DW = D / 8 + 1;     // 16-byte words of 8 ELEM values, K and V tiles
const uint SS = BC + 4;        // floats
const uint PS = BC + 8;        // 16-bit elements
const uint OS = TM + 4;        // floats
#ifdef KV_QUANT
const uint QG = D / GS;        // scale groups of a row (GS a multiple of TM)
#else
const uint QG = 1;
#endif

// K and V tiles hold ELEM values as they are stored, 8 to a word: [key][dim / 8]. Matrix loads read
// them as ELEM (offsets and strides in words), so staging a tile is a copy.
shared uvec4 kTile[BC * DW];
shared uvec4 vTile[BC * DW];
shared float sTile[NSG * QG * TM * SS]; // per subgroup and group: scores; then one 16x16 block of P.V
shared ELEM pTile[NSG * QG * TM * PS];  // per subgroup and group: probabilities; first, Q staging
#ifdef KV_QUANT
shared float ksTile[BC * QG]; // [key][group]: the tile's scales
shared float vsTile[BC * QG];
#endif
shared uint nonFinite[4]; // [tile parity]: the V tile holds NaN or Inf; 16 bytes keep the matrix arrays 16-byte aligned

#define ACC coopmat<float, gl_ScopeSubgroup, TM, TM, gl_MatrixUseAccumulator>
#define MAT_A coopmat<ELEM, gl_ScopeSubgroup, TM, TM, gl_MatrixUseA>
#define MAT_B coopmat<ELEM, gl_ScopeSubgroup, TM, TM, gl_MatrixUseB>

// K and V as 16-byte words, for tiles loaded 8 values at a time (same buffers as tensors.glsl).
layout(std430, binding = 1) readonly buffer K8 { uvec4 kData8[]; };
layout(std430, binding = 2) readonly buffer V8 { uvec4 vData8[]; };

// nonFinite8 reports whether any of the 8 ELEM values of a word is NaN or infinite (all exponent
// bits set).
bool nonFinite8(uvec4 w) {
	const uint e = ELEM_DTYPE == DT_F16 ? 0x7c00u : 0x7f80u;
	const uvec4 lo = uvec4(e), hi = uvec4(e << 16);
	return any(equal(w & lo, lo)) || any(equal(w & hi, hi));
}

// vTileAt is value d of key j of the V tile (dequantized: the code times its scale).
float vTileAt(uint j, uint d) {
	uint w = vTile[j * DW + d / 8][(d % 8) / 2];
#ifdef KV_QUANT
	return unpackHalf2x16(w)[d & 1u] * vsTile[j * QG + d / GS]; // fp16 codes, whatever DTYPE
#else
	return unpack2(w)[d & 1u];
#endif
}

// K and V rows are read in units of 16 bytes, UNITS a row: wideLoads says whether every row starts
// on a unit (then loadUnit reads one at once), else loadUnit reads it element by element.
#ifndef KV_QUANT
// Float K and V are of the matrices' type: the kernel takes no other. Paged K and V (tensors.glsl)
// start their rows at multiples of their strides.
bool wideLoads() {
	uint offs = paged() ? 0u : pc.kOff | pc.vOff;
	return DTYPE == ELEM_DTYPE && ((offs | pc.kTokenStride | pc.kHeadStride | pc.vTokenStride | pc.vHeadStride) & 7u) == 0u;
}

const uint UNITS = D / 8; // 8 values a unit

// loadUnit is unit c of the row of K (which 0) or V (1) that starts at element row.
uvec4 loadUnit(uint which, uint row, uint c, bool wide) {
	if (wide) return which == 0u ? kData8[row / 8 + c] : vData8[row / 8 + c];
	uvec4 w;
	for (uint e = 0; e < 4; e++) { // the input type is ELEM's, so packing is exact
		uint d = row + 8 * c + 2 * e;
		w[e] = which == 0u ? pack2(loadK(d), loadK(d + 1)) : pack2(loadV(d), loadV(d + 1));
	}
	return w;
}
#else
// Quantized K and V: units of 4 code words (WORDS a row, quant.glsl), offsets and strides in
// words.
bool wideLoads() {
	uint offs = paged() ? 0u : pc.kOff | pc.vOff;
	return WORDS % 4u == 0u && ((offs | pc.kTokenStride | pc.kHeadStride | pc.vTokenStride | pc.vHeadStride) & 3u) == 0u;
}

const uint UNITS = (WORDS + 3u) / 4u;
const uint TPU = 4u * PER / 8u;                // tile words (8 values) of a unit
const uint NSCALE = (BC * QG + WG - 1) / WG;   // scales of K (and of V) per invocation
float ksNext[NSCALE], vsNext[NSCALE]; // scale i · WG + invocation: group % QG of key / QG
ScaleLayout kScaleAt, vScaleAt;

uvec4 loadUnit(uint which, uint row, uint c, bool wide) {
	if (wide) return which == 0u ? kData8[row / 4 + c] : vData8[row / 4 + c];
	uvec4 w = uvec4(0);
	for (uint e = 0; e < 4; e++)
		if (4 * c + e < WORDS) w[e] = which == 0u ? kData[row + 4 * c + e] : vData[row + 4 * c + e];
	return w;
}
#endif

const uint NLOAD = (BC * UNITS + WG - 1) / WG; // units of K (and of V) per invocation
uvec4 kNext[NLOAD], vNext[NLOAD];

// fetch reads the tile of keys [k0, k0+BC) of the block's kv head into kNext and vNext (and, of
// quantized K and V, their scales), one tile ahead of the math (stash puts it into shared
// memory), zero from k.kEnd.
void fetch(Block k, int k0, bool wide) {
	for (uint i = 0; i < NLOAD; i++) {
		uint idx = gl_LocalInvocationIndex + i * WG;
		uint j = idx / UNITS, c = idx % UNITS;
		int key = k0 + int(j);
		kNext[i] = uvec4(0);
		vNext[i] = uvec4(0);
		if (idx < BC * UNITS && key < k.kEnd) {
			uint t = k.s.kStart + uint(key);
			kNext[i] = loadUnit(0u, kRow(t, k.kvh), c, wide);
			vNext[i] = loadUnit(1u, vRow(t, k.kvh), c, wide);
		}
	}
#ifdef KV_QUANT
	for (uint i = 0; i < NSCALE; i++) {
		uint idx = gl_LocalInvocationIndex + i * WG;
		int key = k0 + int(idx / QG);
		ksNext[i] = vsNext[i] = 0.0;
		if (idx < BC * QG && key < k.kEnd) {
			uint t = k.s.kStart + uint(key);
			ksNext[i] = kScale(kScaleAt, t, k.kvh, idx % QG);
			vsNext[i] = vScale(vScaleAt, t, k.kvh, idx % QG);
		}
	}
#endif
}

#ifndef KV_QUANT
// stash writes what fetch read into the K and V tiles and flags a V tile that is not all finite.
void stash(uint slot) {
	bool bad = false;
	for (uint i = 0; i < NLOAD; i++) {
		uint idx = gl_LocalInvocationIndex + i * WG;
		if (idx < BC * UNITS) {
			uint at = (idx / UNITS) * DW + idx % UNITS;
			kTile[at] = kNext[i];
			vTile[at] = vNext[i];
			bad = bad || nonFinite8(vNext[i]);
		}
	}
	if (subgroupAny(bad) && subgroupElect()) atomicOr(nonFinite[slot], 1u);
}
#else
#ifdef ELEM_BF16
#error "quantized K/V are staged as fp16"
#endif
// codePair is fields i and i+1 (i even) of a code word as two fp16 values in one word, exactly:
// each field with its sign bit flipped (the integer plus 2^(BITS-1)) as the low mantissa bits of
// fp16 1024, both at once, less 1024 + 2^(BITS-1) in one fp16 pair subtraction (quant.glsl's
// kvValue does the same in fp32, a value at a time).
uint codePair(uint word, uint i) {
	const uint BIAS = 1u << (BITS - 1u), MASK = (1u << BITS) - 1u;
	uint lo = ((word >> (BITS * i)) & MASK) ^ BIAS, hi = ((word >> (BITS * (i + 1u))) & MASK) ^ BIAS;
	f16vec2 x = unpackFloat2x16(lo | (hi << 16) | 0x64006400u) - f16vec2(float16_t(1024u + BIAS));
	return packFloat2x16(x);
}

// elemWord is tile word w (values 8w to 8w + 7) of a unit of codes, as fp16 values.
uvec4 elemWord(uvec4 codes, uint w) {
	uvec4 x;
	for (uint e = 0; e < 4; e++) {
		uint v = 8 * w + 2 * e;
		x[e] = codePair(codes[v / PER], v % PER);
	}
	return x;
}

// stash writes the codes fetch read into the K and V tiles as ELEM values, and their scales, and
// flags a tile with a V scale that is NaN or infinite.
void stash(uint slot) {
	for (uint i = 0; i < NLOAD; i++) {
		uint idx = gl_LocalInvocationIndex + i * WG;
		if (idx < BC * UNITS) {
			uint j = idx / UNITS, c = idx % UNITS;
			for (uint w = 0; w < TPU; w++) {
				if (c * TPU + w < D / 8) {
					kTile[j * DW + c * TPU + w] = elemWord(kNext[i], w);
					vTile[j * DW + c * TPU + w] = elemWord(vNext[i], w);
				}
			}
		}
	}
	bool bad = false;
	for (uint i = 0; i < NSCALE; i++) {
		uint idx = gl_LocalInvocationIndex + i * WG;
		if (idx < BC * QG) {
			ksTile[idx] = ksNext[i];
			vsTile[idx] = vsNext[i];
			bad = bad || isnan(vsNext[i]) || isinf(vsNext[i]);
		}
	}
	if (subgroupAny(bad) && subgroupElect()) atomicOr(nonFinite[slot], 1u);
}
#endif

void main() {
	Block k = block();
	if (blockIdle(k)) return; // uniform across the workgroup
	uint lane = gl_SubgroupInvocationID, g = gl_SubgroupID;
	if (gl_SubgroupSize != SG) {
		// The tiles assume SG lanes: a driver that runs another width gets NaN rows, never a
		// wrong answer or an access outside the shared arrays. The width is uniform, so all
		// invocations leave here together.
		uint r = gl_LocalInvocationIndex;
		if (r < BR && rowValid(k, r)) {
			float nan = uintBitsToFloat(0x7fc00000u);
			for (uint d = 0; d < D; d += 2) storeRow(k, r, d, nan, nan);
			storeRowLSE(k, r, nan, 1.0);
		}
		return;
	}
#ifdef KV_QUANT
	kScaleAt = kvScaleLayout(SEQ_KSCALE, k.s, gl_WorkGroupID.z);
	vScaleAt = kvScaleLayout(SEQ_VSCALE, k.s, gl_WorkGroupID.z);
#endif
	// This subgroup's regions of sTile and pTile, QG blocks of 16 rows each.
	uint sBase = g * QG * TM * SS, pBase = g * QG * TM * PS;
	uint rowInSg = lane / LPR, part = lane % LPR;
	uint row = g * TM + rowInSg; // the lane's row of the block
	bool valid = rowValid(k, row);

	// Q blocks into registers, staged 16x16 at a time through this subgroup's pTile region.
	MAT_A qm[DB];
	for (uint db = 0; db < DB; db++) {
		for (uint e = lane; e < TM * TM; e += SG) {
			uint r = g * TM + e / TM;
			pTile[pBase + e] = ELEM(rowValid(k, r) ? rowQuery(k, r, db * TM + e % TM) : 0.0);
		}
		subgroupMemoryBarrierShared();
		subgroupBarrier();
		coopMatLoad(qm[db], pTile, pBase, TM, gl_CooperativeMatrixLayoutRowMajor);
		subgroupBarrier();
	}

	// m is the max the row's exponentials are taken against: it moves only when a score exceeds it
	// by more than SLACK, so most tiles need no rescaling of O, which stays in matrix registers.
	float m = NEG_INF, l = 0.0;
	ACC oacc[DB];
	for (uint db = 0; db < DB; db++) oacc[db] = ACC(0.0);
	ivec2 mine = valid ? rowKeys(k, row) : ivec2(0);
	if (gl_LocalInvocationIndex == 0) nonFinite[0] = 0u;
	bool wide = wideLoads();
	int stride = tileStride();
	int k0 = firstTile(k);
	if (k0 < k.keys.y) fetch(k, k0, wide);
	for (uint tile = 0; k0 < k.keys.y; k0 += stride, tile++) {
		uint slot = tile & 1u;
		barrier();
		if (gl_LocalInvocationIndex == 0) nonFinite[slot ^ 1u] = 0u; // the next tile's flag
		stash(slot);
		barrier();
		if (k0 + stride < k.keys.y) fetch(k, k0 + stride, wide); // in flight during the math

		// S = Q K^T, one 16-key block (and scale group) at a time: B[d][key] = kTile[key][d] is
		// column-major.
		for (uint kb = 0; kb < KB; kb++) {
			for (uint qg = 0; qg < QG; qg++) {
				ACC acc = ACC(0.0);
				for (uint db = qg * DB / QG; db < (qg + 1) * DB / QG; db++) {
					MAT_B km;
					coopMatLoad(km, kTile, kb * TM * DW + db * TM / 8, DW, gl_CooperativeMatrixLayoutColumnMajor);
					acc = coopMatMulAdd(qm[db], km, acc);
				}
				coopMatStore(acc, sTile, sBase + qg * TM * SS + kb * TM, SS, gl_CooperativeMatrixLayoutRowMajor);
			}
		}
		subgroupMemoryBarrierShared();
		subgroupBarrier();

		// Online softmax of this lane's keys of its row: keys part, part + LPR, ...
		float x[KPL];
		float mx = NEG_INF;
		uint nan = 0u;
		for (uint i = 0; i < KPL; i++) {
			uint j = i * LPR + part;
			int key = k0 + int(j);
			float v = NEG_INF;
			if (key >= mine.x && key < mine.y) {
#ifdef KV_QUANT
				float dot = 0.0;
				for (uint qg = 0; qg < QG; qg++) dot += ksTile[j * QG + qg] * sTile[sBase + qg * TM * SS + rowInSg * SS + j];
#else
				float dot = sTile[sBase + rowInSg * SS + j];
#endif
				v = score(dot * pc.scale);
			}
			x[i] = v;
			nan |= isnan(v) ? 1u : 0u;
			mx = max(mx, v);
		}
		for (uint off = 1; off < LPR; off <<= 1) { // reduce over the row's lanes
			mx = max(mx, subgroupShuffleXor(mx, off));
			nan |= subgroupShuffleXor(nan, off);
		}
		float alpha = raiseMaxLazily(m, mx, nan != 0u); // NaN stays in its row
		bool elementWise = nonFinite[slot] != 0u;
#ifdef KV_QUANT
		// ref: per group, the largest V scale magnitude of the keys some row of the subgroup
		// sees. Where the smallest nonzero one is below ref / 2^12, their probabilities relative
		// to ref would lose bits in fp16: the subgroup takes the element-wise path.
		float ref[QG];
		bool spread = false;
		for (uint qg = 0; qg < QG; qg++) {
			float hi = 0.0, lo = uintBitsToFloat(0x7f800000u);
			for (uint i = 0; i < KPL; i++) {
				int key = k0 + int(i * LPR + part);
				float a = abs(vsTile[(i * LPR + part) * QG + qg]);
				if (key >= mine.x && key < mine.y) {
					hi = max(hi, a);
					if (a != 0.0) lo = min(lo, a);
				}
			}
			ref[qg] = subgroupMax(hi);
			spread = spread || subgroupMin(lo) < ref[qg] * uintBitsToFloat(0x39800000u); // 2^-12
		}
		elementWise = elementWise || spread;
#endif
		float sum = 0.0;
		for (uint i = 0; i < KPL; i++) {
			float p = prob(x[i], m); // at most e^SLACK
			sum += p;
			uint j = i * LPR + part;
#ifdef KV_QUANT
			for (uint qg = 0; qg < QG; qg++) {
				float w = elementWise ? p : ref[qg] == 0.0 ? 0.0 : p * (vsTile[j * QG + qg] / ref[qg]);
				pTile[pBase + qg * TM * PS + rowInSg * PS + j] = ELEM(elemRound(w));
			}
#else
			pTile[pBase + rowInSg * PS + j] = ELEM(elemRound(p));
#endif
		}
		for (uint off = 1; off < LPR; off <<= 1) sum += subgroupShuffleXor(sum, off);
		l = l * alpha + sum;
		subgroupMemoryBarrierShared();
		subgroupBarrier();

		// O *= alpha by rows, through a 16x16 block of sTile, when some row's max moved.
		if (subgroupAny(alpha != 1.0)) {
			for (uint db = 0; db < DB; db++) {
				coopMatStore(oacc[db], sTile, sBase, OS, gl_CooperativeMatrixLayoutRowMajor);
				subgroupMemoryBarrierShared();
				subgroupBarrier();
				for (uint e = 0; e < EPL; e++) sTile[sBase + rowInSg * OS + part * EPL + e] *= alpha;
				subgroupMemoryBarrierShared();
				subgroupBarrier();
				coopMatLoad(oacc[db], sTile, sBase, OS, gl_CooperativeMatrixLayoutRowMajor);
				subgroupBarrier();
			}
		}

		if (elementWise) {
			// A NaN or Inf value must reach only the rows that weigh it: no matrix product here.
			for (uint db = 0; db < DB; db++) {
				coopMatStore(oacc[db], sTile, sBase, OS, gl_CooperativeMatrixLayoutRowMajor);
				subgroupMemoryBarrierShared();
				subgroupBarrier();
				for (uint e = 0; e < EPL; e++) {
					uint c = part * EPL + e;
					float acc = sTile[sBase + rowInSg * OS + c];
					for (uint j = 0; j < BC; j++)
						acc += weigh(float(pTile[pBase + rowInSg * PS + j]), vTileAt(j, db * TM + c));
					sTile[sBase + rowInSg * OS + c] = acc;
				}
				subgroupMemoryBarrierShared();
				subgroupBarrier();
				coopMatLoad(oacc[db], sTile, sBase, OS, gl_CooperativeMatrixLayoutRowMajor);
				subgroupBarrier();
			}
			continue;
		}
		// O += P V (quantized: per group, the tile's product times ref).
		MAT_A pm[QG * KB];
		for (uint qg = 0; qg < QG; qg++)
			for (uint kb = 0; kb < KB; kb++)
				coopMatLoad(pm[qg * KB + kb], pTile, pBase + qg * TM * PS + kb * TM, PS, gl_CooperativeMatrixLayoutRowMajor);
		for (uint db = 0; db < DB; db++) {
			uint qg = db * QG / DB;
#ifdef KV_QUANT
			ACC pv = ACC(0.0);
#endif
			for (uint kb = 0; kb < KB; kb++) {
				MAT_B vm;
				coopMatLoad(vm, vTile, kb * TM * DW + db * TM / 8, DW, gl_CooperativeMatrixLayoutRowMajor);
#ifdef KV_QUANT
				pv = coopMatMulAdd(pm[qg * KB + kb], vm, pv);
#else
				oacc[db] = coopMatMulAdd(pm[qg * KB + kb], vm, oacc[db]);
#endif
			}
#ifdef KV_QUANT
			oacc[db] = oacc[db] + pv * ref[qg];
#endif
		}
	}
	// Normalize and store, one 16x16 block at a time through sTile.
	float inv = l == 0.0 ? 0.0 : 1.0 / l;
	bool writes = valid && rowWritesO(k, l);
	for (uint db = 0; db < DB; db++) {
		subgroupBarrier();
		coopMatStore(oacc[db], sTile, sBase, OS, gl_CooperativeMatrixLayoutRowMajor);
		subgroupMemoryBarrierShared();
		subgroupBarrier();
		if (writes) {
			for (uint e = 0; e < EPL; e += 2) {
				uint at = sBase + rowInSg * OS + part * EPL + e;
				storeRow(k, row, db * TM + part * EPL + e, sTile[at] * inv, sTile[at + 1] * inv);
			}
		}
	}
	if (valid && part == 0) storeRowLSE(k, row, m, l);
}
