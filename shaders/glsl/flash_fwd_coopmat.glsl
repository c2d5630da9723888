// Cooperative-matrix tier of flash_fwd.comp (VK_KHR_cooperative_matrix, fp16 or bf16 inputs as
// ELEM, fp32 accumulation). The workgroup is NSG = WG / SG subgroups; subgroup g owns query rows
// [16g, 16g + 16) of the block (BR = 16 NSG). Q.K^T and P.V run on 16x16x16 matrices, O stays in
// accumulator matrices; the softmax runs on the scores staged in shared memory, LPR = SG / 16
// lanes per row. Where a row's output must be touched element-wise (rescaling, the final store),
// its 16x16 blocks pass through shared memory: lane L handles EPL = 256 / SG elements of row
// L / LPR.

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

// K and V tiles hold ELEM values as they are stored, 8 to a word: [key][dim / 8]. Matrix loads read
// them as ELEM (offsets and strides in words), so staging a tile is a copy.
shared uvec4 kTile[BC * DW];
shared uvec4 vTile[BC * DW];
shared float sTile[NSG * TM * SS]; // per subgroup: scores, then one 16x16 block of P.V
shared ELEM pTile[NSG * TM * PS];  // per subgroup: probabilities; first, Q staging
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

// vTileAt is value d of key j of the V tile.
float vTileAt(uint j, uint d) {
	return unpack2(vTile[j * DW + d / 8][(d % 8) / 2])[d & 1u];
}

// wideLoads: K and V whose rows start on 16-byte boundaries load 8 values per read, one tile ahead
// (fetch into registers before the current tile's math, stash into shared memory after); K and V
// not so aligned load element by element when the tile starts (loadTile). Either way they are of
// the matrices' type: the kernel takes no other.
bool wideLoads() {
	return DTYPE == ELEM_DTYPE && ((pc.kOff | pc.kTokenStride | pc.kHeadStride | pc.vOff | pc.vTokenStride | pc.vHeadStride) & 7u) == 0u;
}

const uint NLOAD = (BC * D / 8 + WG - 1) / WG; // 16-byte words of K (and of V) per invocation
uvec4 kNext[NLOAD], vNext[NLOAD];

// fetch reads keys [k0, k0+BC) of kv head kvh into kNext and vNext, zero past the end.
void fetch(Seq s, uint kvh, int k0) {
	for (uint i = 0; i < NLOAD; i++) {
		uint idx = gl_LocalInvocationIndex + i * WG;
		uint j = idx / (D / 8), c = idx % (D / 8);
		int key = k0 + int(j);
		kNext[i] = uvec4(0);
		vNext[i] = uvec4(0);
		if (idx < BC * D / 8 && key < int(s.lk)) {
			uint t = s.kStart + uint(key);
			kNext[i] = kData8[kRow(t, kvh) / 8 + c];
			vNext[i] = vData8[vRow(t, kvh) / 8 + c];
		}
	}
}

// stash writes what fetch read into the K and V tiles and flags a V tile that is not all finite.
void stash(uint slot) {
	bool bad = false;
	for (uint i = 0; i < NLOAD; i++) {
		uint idx = gl_LocalInvocationIndex + i * WG;
		if (idx < BC * D / 8) {
			uint at = (idx / (D / 8)) * DW + idx % (D / 8);
			kTile[at] = kNext[i];
			vTile[at] = vNext[i];
			bad = bad || nonFinite8(vNext[i]);
		}
	}
	if (subgroupAny(bad) && subgroupElect()) atomicOr(nonFinite[slot], 1u);
}

// loadTile stages keys [k0, k0+BC) element by element (the input type is ELEM's, so packing is
// exact), zero past the end, and flags a V tile that is not all finite.
void loadTile(Seq s, uint kvh, int k0, uint slot) {
	bool bad = false;
	for (uint idx = gl_LocalInvocationIndex; idx < BC * D / 8; idx += WG) {
		uint j = idx / (D / 8), d = 8 * (idx % (D / 8));
		int key = k0 + int(j);
		uvec4 kw = uvec4(0), vw = uvec4(0);
		if (key < int(s.lk)) {
			uint t = s.kStart + uint(key);
			for (uint e = 0; e < 4; e++) {
				kw[e] = pack2(kAt(t, kvh, d + 2 * e), kAt(t, kvh, d + 2 * e + 1));
				vw[e] = pack2(vAt(t, kvh, d + 2 * e), vAt(t, kvh, d + 2 * e + 1));
			}
		}
		kTile[j * DW + d / 8] = kw;
		vTile[j * DW + d / 8] = vw;
		bad = bad || nonFinite8(vw);
	}
	if (subgroupAny(bad) && subgroupElect()) atomicOr(nonFinite[slot], 1u);
}

void main() {
	uint b = gl_WorkGroupID.z, h = gl_WorkGroupID.y;
	Seq s = sequence(b);
	int row0 = int(gl_WorkGroupID.x * BR);
	if (row0 >= int(s.lq)) return; // uniform across the workgroup
	int lq = int(s.lq), lk = int(s.lk);
	uint kvh = kvHead(h);
	uint lane = gl_SubgroupInvocationID, g = gl_SubgroupID;
	if (gl_SubgroupSize != SG) {
		// The tiles assume SG lanes: a driver that runs another width gets NaN rows, never a
		// wrong answer or an access outside the shared arrays. The width is uniform, so all
		// invocations leave here together.
		int r = row0 + int(gl_LocalInvocationIndex);
		if (gl_LocalInvocationIndex < BR && r < lq) {
			float nan = uintBitsToFloat(0x7fc00000u);
			for (uint d = 0; d < D; d += 2) storeO(s.qStart + uint(r), h, d, nan, nan);
			storeLSE(s.qStart + uint(r), h, nan, 1.0);
		}
		return;
	}
	uint sBase = g * TM * SS, pBase = g * TM * PS; // this subgroup's regions of sTile and pTile
	int srow0 = row0 + int(g * TM);
	uint rowInSg = lane / LPR, part = lane % LPR;
	int row = srow0 + int(rowInSg);

	// Q blocks into registers, staged 16x16 at a time through this subgroup's pTile region.
	MAT_A qm[DB];
	for (uint db = 0; db < DB; db++) {
		for (uint e = lane; e < TM * TM; e += SG) {
			int r = srow0 + int(e / TM);
			pTile[pBase + e] = ELEM(r < lq ? qAt(s.qStart + uint(r), h, db * TM + e % TM) : 0.0);
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
	int lo = keyLo(row, lq, lk), hi = row < lq ? keyHi(row, lq, lk) : lo;
	ivec2 keys = blockKeys(row0, int(BR), lq, lk);
	int blockLo = keys.x, blockHi = keys.y;
	if (gl_LocalInvocationIndex == 0) nonFinite[0] = 0u;
	bool wide = wideLoads();
	if (wide && blockLo < blockHi) fetch(s, kvh, blockLo);
	uint tile = 0;
	for (int k0 = blockLo; k0 < blockHi; k0 += int(BC), tile++) {
		uint slot = tile & 1u;
		barrier();
		if (gl_LocalInvocationIndex == 0) nonFinite[slot ^ 1u] = 0u; // the next tile's flag
		if (wide) {
			stash(slot);
		} else {
			loadTile(s, kvh, k0, slot);
		}
		barrier();
		if (wide && k0 + int(BC) < blockHi) fetch(s, kvh, k0 + int(BC)); // in flight during the math

		// S = Q K^T, one 16-key block at a time: B[d][key] = kTile[key][d] is column-major.
		for (uint kb = 0; kb < KB; kb++) {
			ACC acc = ACC(0.0);
			for (uint db = 0; db < DB; db++) {
				MAT_B km;
				coopMatLoad(km, kTile, kb * TM * DW + db * TM / 8, DW, gl_CooperativeMatrixLayoutColumnMajor);
				acc = coopMatMulAdd(qm[db], km, acc);
			}
			coopMatStore(acc, sTile, sBase + kb * TM, SS, gl_CooperativeMatrixLayoutRowMajor);
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
			if (key >= lo && key < hi) v = score(sTile[sBase + rowInSg * SS + j] * pc.scale);
			x[i] = v;
			nan |= isnan(v) ? 1u : 0u;
			mx = max(mx, v);
		}
		for (uint off = 1; off < LPR; off <<= 1) { // reduce over the row's lanes
			mx = max(mx, subgroupShuffleXor(mx, off));
			nan |= subgroupShuffleXor(nan, off);
		}
		float alpha = raiseMaxLazily(m, mx, nan != 0u); // NaN stays in its row
		float sum = 0.0;
		for (uint i = 0; i < KPL; i++) {
			float p = prob(x[i], m); // at most e^SLACK
			sum += p;
			pTile[pBase + rowInSg * PS + i * LPR + part] = ELEM(elemRound(p));
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

		if (nonFinite[slot] != 0u) {
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
		// O += P V.
		MAT_A pm[KB];
		for (uint kb = 0; kb < KB; kb++)
			coopMatLoad(pm[kb], pTile, pBase + kb * TM, PS, gl_CooperativeMatrixLayoutRowMajor);
		for (uint db = 0; db < DB; db++) {
			for (uint kb = 0; kb < KB; kb++) {
				MAT_B vm;
				coopMatLoad(vm, vTile, kb * TM * DW + db * TM / 8, DW, gl_CooperativeMatrixLayoutRowMajor);
				oacc[db] = coopMatMulAdd(pm[kb], vm, oacc[db]);
			}
		}
	}
	// Normalize and store, one 16x16 block at a time through sTile.
	uint qt = s.qStart + uint(row);
	float inv = l == 0.0 ? 0.0 : 1.0 / l;
	for (uint db = 0; db < DB; db++) {
		subgroupBarrier();
		coopMatStore(oacc[db], sTile, sBase, OS, gl_CooperativeMatrixLayoutRowMajor);
		subgroupMemoryBarrierShared();
		subgroupBarrier();
		if (row < lq) {
			for (uint e = 0; e < EPL; e += 2) {
				uint at = sBase + rowInSg * OS + part * EPL + e;
				storeO(qt, h, db * TM + part * EPL + e, sTile[at] * inv, sTile[at + 1] * inv);
			}
		}
	}
	if (row < lq && part == 0) storeLSE(qt, h, m, l);
}
