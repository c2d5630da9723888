// Cooperative-matrix-2 tier of flash_fwd.comp (VK_NV_cooperative_matrix2, fp16 or bf16
// inputs as ELEM, fp32 accumulation). Every matrix has workgroup scope, so the driver spreads each BR x BC score block
// and the BR x D output over the WG invocations as it likes; the softmax runs on the matrices
// themselves (row reductions, element-wise arithmetic), so scores never pass through shared
// memory. Q, K and V are read straight from their buffers through tensor layouts, which clamp
// rows past a sequence's end to zero; O is stored the same way, rows past the end dropped.
//
// Row statistics (running max m, sum l, rescale factor) are BR x RW matrices whose columns all
// hold the row's value (a row reduction writes it to every column); RW is the device's narrowest
// matrix width, so they cost few registers. A reduction with combineFirst widens a row value to
// the score block's BC or the output's D columns when it must meet them element by element.
//
// As in the coopmat tier, a row's max moves only by more than SLACK (softmax.glsl), and O is
// rescaled only on the tiles where some row's max moved, which the workgroup learns at the tile's
// one barrier.

#define ROWS coopmat<float, gl_ScopeWorkgroup, BR, BC, gl_MatrixUseAccumulator>
#define STAT coopmat<float, gl_ScopeWorkgroup, BR, RW, gl_MatrixUseAccumulator>
#define OUT coopmat<float, gl_ScopeWorkgroup, BR, D, gl_MatrixUseAccumulator>
#ifdef ELEM_BF16
// The output in the input type. Devices offer no bf16 accumulators, so a bf16 output leaves as a
// matrix of use A; its values are rounded first (elemRound).
#define OUT16 coopmat<ELEM, gl_ScopeWorkgroup, BR, D, gl_MatrixUseA>
#else
#define OUT16 coopmat<ELEM, gl_ScopeWorkgroup, BR, D, gl_MatrixUseAccumulator>
#endif
#define QMAT coopmat<ELEM, gl_ScopeWorkgroup, BR, D, gl_MatrixUseA>
#define KMAT coopmat<ELEM, gl_ScopeWorkgroup, D, BC, gl_MatrixUseB>
#define PMAT coopmat<ELEM, gl_ScopeWorkgroup, BR, BC, gl_MatrixUseA>
#define VMAT coopmat<ELEM, gl_ScopeWorkgroup, BC, D, gl_MatrixUseB>
#define LAYOUT tensorLayoutNV<2, gl_CooperativeMatrixClampModeConstantNV>
#define FAST_LAYOUT tensorLayoutNV<2, gl_CooperativeMatrixClampModeUndefinedNV>

layout(constant_id = 6) const uint RW = 16; // columns of the row-statistics matrices

// The tensors as ELEM elements (the same buffers as tensors.glsl).
layout(std430, binding = 0) readonly buffer Q16 { ELEM q16[]; };
layout(std430, binding = 1) readonly buffer K16 { ELEM k16[]; };
layout(std430, binding = 2) readonly buffer V16 { ELEM v16[]; };
layout(std430, binding = 3) writeonly buffer O16 { ELEM o16[]; };

// [tile % 3]: FLAG_* bits of a tile. Tile t sets its slot, reads it after the tile's one barrier,
// and clears the slot of tile t + 1 before that barrier, after every read of it by tile t - 2
// (which ended at barrier t - 1) and before any write of it by tile t + 1.
shared uint tileFlags[3];
const uint FLAG_NONFINITE_V = 1u; // the V tile holds NaN or Inf
const uint FLAG_MAX_MOVED = 2u;   // some row's max moved: O must be rescaled

float combineMax(const in float a, const in float b) { return maxNaN(a, b); }
float combineAdd(const in float a, const in float b) { return a + b; }
float combineFirst(const in float a, const in float b) { return a; } // widens a row value

// maskScore hides the scores of keys that query row0 + r does not see.
float maskScore(const in uint r, const in uint c, const in float s, const in int row0, const in int k0,
	const in int lq, const in int lk) {
	int i = row0 + int(r), j = k0 + int(c);
	return j >= keyLo(i, lq, lk) && j < keyHi(i, lq, lk) ? s : NEG_INF;
}

// storeRowLSE writes the logsumexp x of query row row0 + r from the block's first column.
float storeRowLSE(const in uint r, const in uint c, const in float x, const in int row0, const in int lq,
	const in uint qStart, const in uint h) {
	if (c == 0u && row0 + int(r) < lq) lseData[(qStart + uint(row0) + r) * pc.hq + h] = x;
	return x;
}

// weighNonFinite adds to an output element what the NaN and +-Inf values of a V tile contribute:
// nan, pos and neg count, for the element's row and column, the keys with a nonzero probability
// whose value is NaN, +Inf and -Inf.
float weighNonFinite(const in uint r, const in uint c, const in float o, const in float nan,
	const in float pos, const in float neg) {
	if (nan > 0.0 || (pos > 0.0 && neg > 0.0)) return uintBitsToFloat(0x7fc00000u);
	float inf = uintBitsToFloat(0x7f800000u);
	return pos > 0.0 ? o + inf : neg > 0.0 ? o - inf : o;
}

// fastLayout is tensorLayout without clamping, for tiles wholly inside the tensor.
FAST_LAYOUT fastLayout(uint rows, uint skip, uint tokenStride) {
	FAST_LAYOUT t = createTensorLayoutNV(2, gl_CooperativeMatrixClampModeUndefinedNV);
	t = setTensorLayoutDimensionNV(t, rows, skip + D);
	return setTensorLayoutStrideNV(t, tokenStride, 1);
}

// tensorLayout addresses the rows of one head of one sequence of a [token, head, dim] tensor: row
// r, dim d at base + r * tokenStride + d. The element offset handed to a load or store must be
// 16-byte aligned, so the layout starts at base rounded down to 8 halves and its rows are slices
// that start `skip` halves in. Rows at or past `rows` read as zero and are not written.
LAYOUT tensorLayout(uint base, uint rows, uint tokenStride, out uint start, out uint skip) {
	start = base & ~7u;
	skip = base - start;
	LAYOUT t = createTensorLayoutNV(2, gl_CooperativeMatrixClampModeConstantNV);
	t = setTensorLayoutDimensionNV(t, rows, skip + D);
	return setTensorLayoutStrideNV(t, tokenStride, 1);
}

// nonFiniteOf returns, as a 0/1 matrix, which elements of a V tile are NaN (want 0), +Inf (1) or
// -Inf (2).
VMAT nonFiniteOf(VMAT v, uint want) {
	VMAT m;
	for (int i = 0; i < v.length(); i++) {
		float x = float(v[i]);
		bool hit = want == 0u ? isnan(x) : want == 1u ? x == uintBitsToFloat(0x7f800000u) : x == uintBitsToFloat(0xff800000u);
		m[i] = ELEM(hit ? 1.0 : 0.0);
	}
	return m;
}

void main() {
	uint b = gl_WorkGroupID.z, h = gl_WorkGroupID.y;
	Seq s = sequence(b);
	int row0 = int(gl_WorkGroupID.x * BR);
	if (row0 >= int(s.lq)) return; // uniform across the workgroup
	int lq = int(s.lq), lk = int(s.lk);
	uint kvh = kvHead(h);

	uint qStart, qSkip, kStart, kSkip, vStart, vSkip, oStart, oSkip;
	LAYOUT tq = tensorLayout(pc.qOff + s.qStart * pc.qTokenStride + h * pc.qHeadStride, s.lq, pc.qTokenStride, qStart, qSkip);
	LAYOUT tk = tensorLayout(pc.kOff + s.kStart * pc.kTokenStride + kvh * pc.kHeadStride, s.lk, pc.kTokenStride, kStart, kSkip);
	LAYOUT tv = tensorLayout(pc.vOff + s.kStart * pc.vTokenStride + kvh * pc.vHeadStride, s.lk, pc.vTokenStride, vStart, vSkip);
	LAYOUT to = tensorLayout(pc.oOff + s.qStart * pc.oTokenStride + h * pc.oHeadStride, s.lq, pc.oTokenStride, oStart, oSkip);
	FAST_LAYOUT fk = fastLayout(s.lk, kSkip, pc.kTokenStride), fv = fastLayout(s.lk, vSkip, pc.vTokenStride);
	tensorViewNV<2, false, 1, 0> transposed = createTensorViewNV(2, false, 1, 0);

	QMAT qm;
	coopMatLoadTensorNV(qm, q16, qStart, sliceTensorLayoutNV(tq, uint(row0), BR, qSkip, D));

	STAT m = STAT(NEG_INF), l = STAT(0.0);
	OUT o = OUT(0.0);
	ivec2 keys = blockKeys(row0, int(BR), lq, lk);
	int lastRow = min(row0 + int(BR), lq) - 1;
	if (gl_LocalInvocationIndex < 3) tileFlags[gl_LocalInvocationIndex] = 0u;
	barrier();
	uint tile = 0;
	for (int k0 = keys.x; k0 < keys.y; k0 += int(BC), tile++) {
		bool inside = k0 + int(BC) <= lk; // no key of the tile past the sequence's end
		KMAT km;
		if (inside) {
			coopMatLoadTensorNV(km, k16, kStart, sliceTensorLayoutNV(fk, uint(k0), BC, kSkip, D), transposed);
		} else {
			coopMatLoadTensorNV(km, k16, kStart, sliceTensorLayoutNV(tk, uint(k0), BC, kSkip, D), transposed);
		}
		ROWS sc = coopMatMulAdd(qm, km, ROWS(0.0));
		if (pc.softcap > 0.0) {
			for (int i = 0; i < sc.length(); i++) sc[i] = score(sc[i] * pc.scale);
		} else {
			sc = sc * pc.scale;
		}
		// Every row of the block sees every key of the tile, or some need a mask.
		if (keyLo(lastRow, lq, lk) > k0 || keyHi(row0, lq, lk) < k0 + int(BC))
			coopMatPerElementNV(sc, sc, maskScore, row0, k0, lq, lk);

		STAT mx, alpha;
		coopMatReduceNV(mx, sc, gl_CooperativeMatrixReduceRowNV, combineMax);
		bool moved = false;
		for (int i = 0; i < m.length(); i++) {
			float mi = m[i];
			alpha[i] = raiseMaxLazily(mi, mx[i], isnan(mx[i])); // NaN stays in its row
			m[i] = mi;
			moved = moved || alpha[i] != 1.0;
		}
		ROWS mw;
		coopMatReduceNV(mw, m, gl_CooperativeMatrixReduceRowNV, combineFirst);
		for (int i = 0; i < sc.length(); i++) sc[i] = prob(sc[i], mw[i]); // at most e^SLACK
		STAT sum;
		coopMatReduceNV(sum, sc, gl_CooperativeMatrixReduceRowNV, combineAdd);
		l = l * alpha + sum;
#ifdef ELEM_BF16
		for (int i = 0; i < sc.length(); i++) sc[i] = elemRound(sc[i]);
#endif

		PMAT pm = PMAT(sc);
		VMAT vm;
		if (inside) {
			coopMatLoadTensorNV(vm, v16, vStart, sliceTensorLayoutNV(fv, uint(k0), BC, vSkip, D));
		} else {
			coopMatLoadTensorNV(vm, v16, vStart, sliceTensorLayoutNV(tv, uint(k0), BC, vSkip, D));
		}
		bool bad = false;
		for (int i = 0; i < vm.length(); i++) {
			float x = float(vm[i]);
			bad = bad || isnan(x) || isinf(x);
		}
		uint slot = tile % 3u;
		uint mine = (bad ? FLAG_NONFINITE_V : 0u) | (moved ? FLAG_MAX_MOVED : 0u);
		mine = subgroupOr(mine);
		if (mine != 0u && subgroupElect()) atomicOr(tileFlags[slot], mine);
		if (gl_LocalInvocationIndex == 0) tileFlags[(slot + 1u) % 3u] = 0u;
		barrier();
		uint flags = tileFlags[slot];

		if ((flags & FLAG_MAX_MOVED) != 0u) {
			OUT alphaD;
			coopMatReduceNV(alphaD, alpha, gl_CooperativeMatrixReduceRowNV, combineFirst);
			o = o * alphaD;
		}
		// A NaN or Inf value must reach only the rows that weigh it, and a product would spread
		// it (0 * Inf is NaN): such a tile is multiplied with those values zeroed, and what they
		// contribute is added element-wise from counts of them per row (exact small integers).
		if ((flags & FLAG_NONFINITE_V) != 0u) {
			PMAT seen;
			for (int i = 0; i < pm.length(); i++) seen[i] = ELEM(float(pm[i]) != 0.0 ? 1.0 : 0.0);
			OUT nan = coopMatMulAdd(seen, nonFiniteOf(vm, 0u), OUT(0.0));
			OUT pos = coopMatMulAdd(seen, nonFiniteOf(vm, 1u), OUT(0.0));
			OUT neg = coopMatMulAdd(seen, nonFiniteOf(vm, 2u), OUT(0.0));
			for (int i = 0; i < vm.length(); i++) {
				float x = float(vm[i]);
				if (isnan(x) || isinf(x)) vm[i] = ELEM(0.0);
			}
			o = coopMatMulAdd(pm, vm, o);
			coopMatPerElementNV(o, o, weighNonFinite, nan, pos, neg);
		} else {
			o = coopMatMulAdd(pm, vm, o);
		}
	}

	// Normalize and store; a row that saw no key has l = 0 and stores 0.
	STAT inv;
	for (int i = 0; i < l.length(); i++) inv[i] = l[i] == 0.0 ? 0.0 : 1.0 / l[i];
	OUT invD;
	coopMatReduceNV(invD, inv, gl_CooperativeMatrixReduceRowNV, combineFirst);
#ifdef ELEM_BF16
	o = o * invD;
	for (int i = 0; i < o.length(); i++) o[i] = elemRound(o[i]);
	OUT16 out16 = OUT16(o);
#else
	OUT16 out16 = OUT16(o * invD);
#endif
	coopMatStoreTensorNV(out16, o16, oStart, sliceTensorLayoutNV(to, uint(row0), BR, oSkip, D));
	if ((pc.flags & FLAG_WRITE_LSE) != 0u) {
		STAT lse;
		for (int i = 0; i < l.length(); i++) lse[i] = l[i] == 0.0 ? NEG_INF : m[i] + log(l[i]);
		coopMatPerElementNV(lse, lse, storeRowLSE, row0, lq, s.qStart, h);
	}
}
