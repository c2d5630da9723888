// INT8 and INT4 tensor-core decode (decode.comp with TIER_COOPMAT, KV_INT8 or KV_INT4, and IMMA):
// package quant's Int8 or Int4 K and V (quant.glsl; one bf16 scale per token and kv head: Int4
// only where D is its group size GS, one group a row), Q.K^T and P.V on 16x16x32 int8 cooperative
// matrices with int32 accumulation, so that the K and V bytes, not the arithmetic, bound the time.
//
// The workgroup is one subgroup of 32 lanes and one block of BR = 16 rows (decode.comp's rows);
// tiles of BC = 32 keys, from firstTile a tileStride apart. The host sets BR, BC, WG and SG so and
// takes the kernel only for dense K and V whose offsets and token strides are multiples of 16
// bytes, and head dims that are multiples of 32 up to 128 (INT4: D == GS); other sizes or
// placements, and paged K/V, give NaN rows.
//
// Queries: row r's D values q (queryAt times pc.scale) become two int8 terms with one scale
// s = max|q| / 127 (twoTerms): a = round(q / s), b = round((q / s - a) * 254), so that
// q = s (a + b / 254) within s / 508. They are staged through shared memory once and kept as A
// matrices (16 x 32), D / 32 a term.
// Scores: K's codes are B matrices (32 channels x 16 keys, column-major: a key's row of K is a
// column), loaded straight from K's bytes (INT8's whole tiles; others staged, below); hi = A_a K and lo = A_b K are exact, and so is
// 254 hi + lo (at most 254 * 256 * 127 * 127 < 2^31 at d = 256), staged as int32 in shared memory:
// times s / 254 and the key's K scale, it is the score.
// Softmax: lanes 2r and 2r + 1 own row r, 16 keys each, with the matrix tiers' lazily raised
// maximum (softmax.glsl's raiseMaxLazily: p <= e^SLACK, O rescaled only where a maximum moves).
// P.V: p' = p * (the key's V scale) becomes two int8 terms as the queries do, with one scale a row
// and tile, sp = max |p'| / 127 over the row's keys of the tile; V's codes are B matrices (32 keys
// x 16 channels, row-major), loaded as K's are; O_block += float(254 hi + lo) times
// sp / 254 of each row, through a matrix whose row r holds row r's factor (factors). A scale per
// row rather than one per tile: the rows of a block (query heads of a kv head, new tokens) take
// their exponentials against maxima of their own, so their probabilities in one tile may differ
// by e^SLACK and far more where a row's weight lies in other tiles; with a scale of its own each
// row's error is 2^-16 of its own largest term, and a NaN in one row leaves the others' codes
// alone. It costs a shuffle instead of a subgroup reduction, and a product of two matrices
// element by element instead of a matrix times a scalar.
// Non-finite V scales (NaN or Inf, or so large that p' might overflow): the tile takes the
// element-wise path, p * (code * V scale) added to O through shared memory where p is not 0
// (weigh), so that a key a row does not see adds nothing and NaN reaches only the rows that weigh
// it. A NaN K scale makes the scores of the rows that see the key NaN, as at the other tiers.
// INT8 tails: a tile that reaches past the sequence's keys, where the buffers may end, is staged
// into shared memory (zero from k.kEnd) and loaded from there; the others are not staged at all.
// Each tile's loads are issued during the tile before: K's after its Q.K^T, V's after its P.V.
// INT4: codes of 4 bits cannot be loaded as int8 matrices, so every tile is staged: each lane
// reads its key's K and V words of the next tile into registers during the tile before (zero from
// k.kEnd), and at the tile's start writes them into shared memory as int8 bytes (int4Bytes), from
// where the matrices are loaded as INT8's tails are.
//
// Loops over constant counts are unrolled and arrays indexed only by their counters, so that the
// driver keeps the arrays in registers.

const uint IR = 16;       // rows of the block (BR)
const uint IK = 32;       // keys of a tile (BC)
const uint ISG = 32;      // lanes of the subgroup and workgroup (SG, WG)
const uint QB = D / 32;   // 32-channel blocks: the depth steps of Q.K^T
const uint VB = D / 16;   // 16-channel blocks of V and O
const uint KH = IK / 16;  // 16-key halves of a tile
const uint LK = IK / 2;   // keys of a lane in the softmax
const float TERM = 254.0; // the second term's weight: b / TERM

#define QMAT coopmat<int8_t, gl_ScopeSubgroup, 16, 32, gl_MatrixUseA>
#define KMAT coopmat<int8_t, gl_ScopeSubgroup, 32, 16, gl_MatrixUseB>
#define IACC coopmat<int32_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>
#define FACC coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>

#ifdef KV_INT8
// K's and V's codes as bytes (the buffers of tensors.glsl's kData and vData): byte 4w + i of a row
// is field i of its word w, channel 4w + i.
layout(std430, binding = 1) readonly buffer KBytes { int8_t kBytes[]; };
layout(std430, binding = 2) readonly buffer VBytes { int8_t vBytes[]; };
#endif

// Shared memory in 16-byte units, rows padded by one unit; every matrix row starts on a unit, as
// matrix loads and stores need.
const uint RW = D / 16 + 1;         // units a row of codes
const uint SW = IK / 4 + 1;         // units a row of scores or probabilities
const uint PW = IK / 16 + 1;        // units a row of probability codes
const uint OW = 16 / 4 + 1;         // units a row of an O block
shared uvec4 codes[2 * IK * RW];    // a staged tile: K's codes (rows 0-31), V's (32-63); first the queries' two terms (rows 0-15, 16-31)
shared ivec4 scores[IR * SW];       // the tile's 254 hi + lo, [row][key]
shared vec4 probs[IR * SW];         // the tile's probabilities, for the element-wise path
shared uvec4 pCodes[2 * IR * PW];   // the tile's p' codes, [term][row][key]
shared vec4 factors[2 * IR * 4];    // two 16 x 16 matrices whose row r holds row r's alpha, and its sp / 254
shared vec4 oBlock[IR * OW];        // one 16 x 16 block of O
shared float ksTile[IK], vsTile[IK]; // the tile's K and V scales

// The matrices, in registers (functions take no arrays whose size is a specialization constant).
QMAT qa[2 * QB];  // the queries' terms, [term][channel block]
KMAT km[KH * QB]; // a tile's K codes, [half][channel block]
KMAT vm[VB];      // a tile's V codes, [channel block]
FACC o[VB];       // the output, [channel block]
uint kWords[WORDS], vWords[WORDS]; // the code words of the lane's key of a tile to stage (quant.glsl's WORDS a row)

// twoTerms splits x (|x| <= 127: a value over its scale) into the int8 codes a = round(x) and
// b = round((x - a) * TERM), within [-127, 127] both, so that x = a + b / TERM within 1 / (2 TERM).
ivec2 twoTerms(float x) {
	float a = clamp(round(x), -127.0, 127.0);
	return ivec2(a, clamp(round((x - a) * TERM), -127.0, 127.0));
}

// pack4 packs four int8 codes into a word, the first in the lowest byte (the order of bytes in
// memory, which the matrix loads read).
uint pack4(ivec4 c) {
	uvec4 b = uvec4(c) & 0xffu;
	return b.x | (b.y << 8) | (b.z << 16) | (b.w << 24);
}

// sharedBarrier orders the subgroup's shared-memory accesses before it with those after it (its
// only barrier: the workgroup is the subgroup). Its semantics name shared memory only, so that
// it need not wait for the next tile's loads from K and V in flight (subgroupBarrier's semantics
// include buffer memory).
void sharedBarrier() {
	controlBarrier(gl_ScopeSubgroup, gl_ScopeSubgroup, gl_StorageSemanticsShared, gl_SemanticsAcquireRelease);
}

// twoTermUnits codes 16 values (each over its scale: |x| <= 127) as two 16-byte units of int8
// codes, their first terms in a and their second in b, the first value in the lowest byte.
void twoTermUnits(float x[16], out uvec4 a, out uvec4 b) {
	[[unroll]] for (uint w = 0; w < 4; w++) {
		ivec4 ca, cb;
		[[unroll]] for (uint e = 0; e < 4; e++) {
			ivec2 t = twoTerms(x[4 * w + e]);
			ca[e] = t.x;
			cb[e] = t.y;
		}
		a[w] = pack4(ca);
		b[w] = pack4(cb);
	}
}

// codeFactor is 127 / mx, which takes values of magnitude up to mx to codes, and sets scale to the
// value of a code of 1: mx / 127, or where 127 / mx overflows (mx below about 3.7e-37) factor
// 2^126 and scale 2^-126, so that no code is made from an infinity. NaN mx gives factor 0 and a
// NaN scale, 0 gives 0 and 0.
float codeFactor(float mx, out float scale) {
	float f = mx > 0.0 ? 127.0 / mx : 0.0;
	scale = mx / 127.0;
	if (isinf(f)) {
		f = uintBitsToFloat(0x7e800000u);     // 2^126
		scale = uintBitsToFloat(0x00800000u); // 2^-126
	}
	return f;
}

// stageQueries writes row r's two query terms into codes (rows r and IR + r), the lane's half h
// of the channels, and returns the row's scale s (NaN for a row with a NaN, 0 for a zero row).
float stageQueries(Block k, uint r, uint h) {
	const uint HD = D / 2; // channels of a lane
	bool valid = rowValid(k, r);
	float mx = 0.0;
	[[unroll]] for (uint i = 0; i < HD; i++)
		mx = maxNaN(mx, valid ? abs(rowQuery(k, r, h * HD + i) * pc.scale) : 0.0);
	mx = maxNaN(mx, subgroupShuffleXor(mx, 1u));
	float s;
	float inv = codeFactor(mx, s);
	[[unroll]] for (uint u = 0; u < HD / 16; u++) {
		float x[16];
		[[unroll]] for (uint e = 0; e < 16; e++)
			x[e] = valid ? rowQuery(k, r, h * HD + 16 * u + e) * pc.scale * inv : 0.0;
		uvec4 wa, wb;
		twoTermUnits(x, wa, wb);
		codes[r * RW + h * (HD / 16) + u] = wa;
		codes[(IR + r) * RW + h * (HD / 16) + u] = wb;
	}
	return s;
}

// K's and V's code words four at a time (the buffers of tensors.glsl's kData and vData): rows
// start on whole 16-byte units (the host's placement rule, and main's test) and hold WORDS words,
// a multiple of 4 at the head dims the kernel takes.
layout(std430, binding = 1) readonly buffer KQuads { uvec4 kQuads[]; };
layout(std430, binding = 2) readonly buffer VQuads { uvec4 vQuads[]; };

// readCodes reads the code words of the lane's key of the tile from key k0 into kWords and
// vWords, 16 bytes a load: zero from k.kEnd, so that no key past the sequence is read.
void readCodes(Block k, int k0) {
	int key = k0 + int(gl_SubgroupInvocationID);
	bool reads = key < k.kEnd;
	uint t = k.s.kStart + uint(reads ? key : k0);
	uint kr = kRow(t, k.kvh) / 4u, vr = vRow(t, k.kvh) / 4u;
	[[unroll]] for (uint u = 0; u < WORDS / 4u; u++) {
		uvec4 kq = reads ? kQuads[kr + u] : uvec4(0u), vq = reads ? vQuads[vr + u] : uvec4(0u);
		[[unroll]] for (uint e = 0; e < 4u; e++) {
			kWords[4u * u + e] = kq[e];
			vWords[4u * u + e] = vq[e];
		}
	}
}

#ifdef KV_INT4
// int4Bytes returns fields 4i to 4i + 3 of an Int4 word as four int8 bytes, the first in the
// lowest. flipped is the word with its fields' sign bits flipped (word ^ KV_SIGNS), so that each
// field holds its value plus 8, 0 to 15. Those are spread into bytes (fields 4i, 4i + 1 to bytes
// 0 and 2, then every other field one byte up); then 0x78 added to each byte gives 0x80 plus the
// value, 0x78 to 0x87, without a carry or borrow between bytes (the (b | 0x80) - 8 of a byte b
// below 0x80); flipping bit 7 back gives the value's two's complement byte: v below 0 gives
// 0x80 - |v| ^ 0x80 = 0x100 - |v|.
uint int4Bytes(uint flipped, uint i) {
	uint b = (flipped >> (16u * i)) & 0xffffu;
	b = (b | (b << 8)) & 0x00ff00ffu;
	b = (b | (b << 4)) & 0x0f0f0f0fu;
	return (b + 0x78787878u) ^ 0x80808080u;
}

// int4Unit is 16 channels of int8 codes from their two Int4 words.
uvec4 int4Unit(uint w0, uint w1) {
	uint a = w0 ^ KV_SIGNS, b = w1 ^ KV_SIGNS;
	return uvec4(int4Bytes(a, 0u), int4Bytes(a, 1u), int4Bytes(b, 0u), int4Bytes(b, 1u));
}

// codeUnit is 16-byte unit u of a row of int8 codes from its words w: channels 16u to 16u + 15.
#define codeUnit(w, u) int4Unit(w[2u * (u)], w[2u * (u) + 1u])
#else
// codeUnit is 16-byte unit u of a row of int8 codes from its Int8 words w: channels 16u to 16u + 15.
#define codeUnit(w, u) uvec4(w[4u * (u)], w[4u * (u) + 1u], w[4u * (u) + 2u], w[4u * (u) + 3u])
#endif

// stageCodes writes kWords and vWords, read by readCodes, into codes as int8 bytes in channel
// order: K's at row lane, V's at row IK + lane. The caller orders it with the matrix loads from
// codes before and after (sharedBarrier).
void stageCodes() {
	uint lane = gl_SubgroupInvocationID;
	[[unroll]] for (uint u = 0; u < D / 16; u++) {
		codes[lane * RW + u] = codeUnit(kWords, u);
		codes[(IK + lane) * RW + u] = codeUnit(vWords, u);
	}
}

// loadStagedK reads the K codes of a tile from codes into km; loadStagedV V's into vm.
void loadStagedK() {
	[[unroll]] for (uint kh = 0; kh < KH; kh++)
		[[unroll]] for (uint cb = 0; cb < QB; cb++)
			coopMatLoad(km[kh * QB + cb], codes, 16u * kh * RW + 2u * cb, RW, gl_CooperativeMatrixLayoutColumnMajor);
}

void loadStagedV() {
	[[unroll]] for (uint db = 0; db < VB; db++)
		coopMatLoad(vm[db], codes, IK * RW + db, RW, gl_CooperativeMatrixLayoutRowMajor);
}

#ifdef KV_INT8
// tileFull reports whether the tile from key k0 lies within the sequence's keys: then its rows are
// read whole, straight from K and V; else it is staged.
bool tileFull(Block k, int k0) { return k0 + int(IK) <= int(k.s.lk); }

// loadK reads the K codes of the tile from key k0 into km; a tail tile is staged first, V's codes
// too (loadV reads them from there).
void loadK(Block k, int k0) {
	if (tileFull(k, k0)) {
		uint stride = 4u * pc.kTokenStride; // bytes
		[[unroll]] for (uint kh = 0; kh < KH; kh++) {
			uint base = 4u * kRow(k.s.kStart + uint(k0) + 16u * kh, k.kvh);
			[[unroll]] for (uint cb = 0; cb < QB; cb++)
				coopMatLoad(km[kh * QB + cb], kBytes, base + 32u * cb, stride, gl_CooperativeMatrixLayoutColumnMajor);
		}
		return;
	}
	sharedBarrier(); // every matrix load from codes is done
	readCodes(k, k0); // after the barrier: the words are not live across it
	stageCodes();
	sharedBarrier();
	loadStagedK();
}

// loadV reads the V codes of the tile from key k0 into vm; a tail tile from where loadK staged it.
void loadV(Block k, int k0) {
	if (tileFull(k, k0)) {
		uint stride = 4u * pc.vTokenStride, base = 4u * vRow(k.s.kStart + uint(k0), k.kvh);
		[[unroll]] for (uint db = 0; db < VB; db++)
			coopMatLoad(vm[db], vBytes, base + 16u * db, stride, gl_CooperativeMatrixLayoutRowMajor);
		return;
	}
	loadStagedV();
}
#endif

// loadScales reads the K and V scales of the lane's key of the tile from key k0 (0 from k.kEnd).
void loadScales(Block k, int k0, ScaleLayout kAt, ScaleLayout vAt, out float ks, out float vs) {
	int key = k0 + int(gl_SubgroupInvocationID);
	ks = vs = 0.0;
	if (key < k.kEnd) {
		uint t = k.s.kStart + uint(key);
		ks = kScale(kAt, t, k.kvh, 0u);
		vs = vScale(vAt, t, k.kvh, 0u);
	}
}

// setFactor writes row r's factor x into its half h of factor matrix i.
void setFactor(uint i, uint r, uint h, float x) {
	factors[(i * IR + r) * 4 + 2 * h] = vec4(x);
	factors[(i * IR + r) * 4 + 2 * h + 1] = vec4(x);
}

// weighElements adds to o the tile's probabilities (probs) times the values of its keys, where
// a probability is not 0, one 16 x 16 block at a time through shared memory: the element-wise
// path of a tile with a non-finite V scale.
void weighElements(Block k, int k0, uint r, uint h) {
	[[unroll]] for (uint db = 0; db < VB; db++) {
		sharedBarrier();
		coopMatStore(o[db], oBlock, 0, OW, gl_CooperativeMatrixLayoutRowMajor);
		sharedBarrier();
		vec4 acc[2] = vec4[2](oBlock[r * OW + 2 * h], oBlock[r * OW + 2 * h + 1]);
		[[unroll]] for (uint j = 0; j < IK; j++) {
			float p = probs[r * SW + j / 4][j % 4];
			// Only keys the row sees (p not 0, main's probabilities) are read: they are within the
			// sequence; the test of kEnd keeps it so whatever p holds.
			bool reads = p != 0.0 && k0 + int(j) < k.kEnd;
#ifdef KV_INT4
			// The tile's V codes as stageCodes left them (zero from k.kEnd): channels 16db + 8h on.
			uvec4 unit = codes[(IK + j) * RW + db];
			uvec2 words = h == 0u ? unit.xy : unit.zw;
#else
			uint at = reads ? 4u * vRow(k.s.kStart + uint(k0) + j, k.kvh) + 16u * db + 8u * h : 0u;
#endif
			[[unroll]] for (uint e = 0; e < 8; e++) {
#ifdef KV_INT4
				int c = bitfieldExtract(int(words[e / 4]), int(8 * (e % 4)), 8);
#else
				int c = reads ? int(vBytes[at + e]) : 0;
#endif
				float v = reads ? float(c) * vsTile[j] : 0.0; // quant.glsl: one exact product
				acc[e / 4][e % 4] += weigh(p, v);
			}
		}
		oBlock[r * OW + 2 * h] = acc[0];
		oBlock[r * OW + 2 * h + 1] = acc[1];
		sharedBarrier();
		coopMatLoad(o[db], oBlock, 0, OW, gl_CooperativeMatrixLayoutRowMajor);
	}
}

void main() {
	Block k = block();
	if (blockIdle(k)) return; // uniform across the workgroup
	uint lane = gl_SubgroupInvocationID;
	bool placed = ((pc.kOff | pc.vOff | pc.kTokenStride | pc.kHeadStride | pc.vTokenStride | pc.vHeadStride) & 3u) == 0u;
	bool sizes = gl_SubgroupSize == ISG && WG == ISG && BR == IR && BC == IK && D % 32u == 0u && D <= 128u;
#ifdef KV_INT4
	sizes = sizes && GS == D; // one scale group a row: a key's K and V scales are group 0's
#endif
	if (!sizes || !placed || paged()) {
		// Sizes or K/V the kernel was not built for: NaN rows, never a wrong answer or an access
		// outside the shared arrays. Uniform: all invocations leave here together.
		uint r = gl_LocalInvocationIndex;
		if (r < BR && rowValid(k, r)) {
			float nan = uintBitsToFloat(0x7fc00000u);
			[[unroll]] for (uint d = 0; d < D; d += 2) storeRow(k, r, d, nan, nan);
			storeRowLSE(k, r, nan, 1.0);
		}
		return;
	}
	ScaleLayout kScaleAt = kvScaleLayout(SEQ_KSCALE, k.s, gl_WorkGroupID.z);
	ScaleLayout vScaleAt = kvScaleLayout(SEQ_VSCALE, k.s, gl_WorkGroupID.z);
	uint r = lane >> 1, h = lane & 1u; // the lane's row, and its half of the row's keys and channels
	bool valid = rowValid(k, r);
	ivec2 mine = valid ? rowKeys(k, r) : ivec2(0);

	float qScale = stageQueries(k, r, h) / TERM; // score = (254 hi + lo) qScale kScale
	sharedBarrier();
	[[unroll]] for (uint t = 0; t < 2; t++)
		[[unroll]] for (uint cb = 0; cb < QB; cb++)
			coopMatLoad(qa[t * QB + cb], codes, t * IR * RW + 2u * cb, RW, gl_CooperativeMatrixLayoutRowMajor);

	float m = NEG_INF, l = 0.0;
	[[unroll]] for (uint db = 0; db < VB; db++) o[db] = FACC(0.0);
	float ks = 0.0, vs = 0.0; // the scales of the lane's key of the tile
	int stride = tileStride();
	int k0 = firstTile(k);
	if (k0 < k.keys.y) {
#ifdef KV_INT4
		readCodes(k, k0);
#else
		loadK(k, k0);
		loadV(k, k0);
#endif
		loadScales(k, k0, kScaleAt, vScaleAt, ks, vs);
	}
	for (; k0 < k.keys.y; k0 += stride) {
		int next = k0 + stride;
		bool more = next < k.keys.y; // uniform
		sharedBarrier(); // the tile before is done with the shared arrays
		ksTile[lane] = ks;
		vsTile[lane] = vs;
		bool elementWise = subgroupAny(!(abs(vs) < 1e30)); // NaN, Inf, or p' may overflow
#ifdef KV_INT4
		stageCodes();
		sharedBarrier();
		loadStagedK();
		if (more) readCodes(k, next); // in flight during the tile
#endif
		if (more) loadScales(k, next, kScaleAt, vScaleAt, ks, vs);

		// S = Q K^T by 16-key halves: 254 hi + lo.
		[[unroll]] for (uint kh = 0; kh < KH; kh++) {
			IACC hi = IACC(0), lo = IACC(0);
			[[unroll]] for (uint cb = 0; cb < QB; cb++) {
				hi = coopMatMulAdd(qa[cb], km[kh * QB + cb], hi);
				lo = coopMatMulAdd(qa[QB + cb], km[kh * QB + cb], lo);
			}
			coopMatStore(hi * IACC(254) + lo, scores, 4u * kh, SW, gl_CooperativeMatrixLayoutRowMajor);
		}
#ifdef KV_INT8
		if (more) loadK(k, next); // in flight during the softmax and P.V
#endif
		sharedBarrier();

		// Online softmax of the lane's keys of its row: keys 16h to 16h + 15.
		ivec4 s4[LK / 4];
		[[unroll]] for (uint i = 0; i < LK / 4; i++) s4[i] = scores[r * SW + 4 * h + i];
		float x[LK];
		float mx = NEG_INF;
		uint nan = 0u;
		[[unroll]] for (uint i = 0; i < LK; i++) {
			uint j = LK * h + i;
			int key = k0 + int(j);
			float v = NEG_INF;
			if (key >= mine.x && key < mine.y) v = score(float(s4[i / 4][i % 4]) * qScale * ksTile[j]);
			x[i] = v;
			nan |= isnan(v) ? 1u : 0u;
			mx = max(mx, v);
		}
		mx = max(mx, subgroupShuffleXor(mx, 1u)); // the row's other lane
		nan |= subgroupShuffleXor(nan, 1u);
		float alpha = raiseMaxLazily(m, mx, nan != 0u); // NaN stays in its row
		float p[LK];
		float sum = 0.0, pm = 0.0, pScale = 0.0;
		[[unroll]] for (uint i = 0; i < LK; i++) {
			// At most e^SLACK; 0 for a key the row does not see, in a NaN row too (where prob gives
			// NaN), so that the element-wise path reads no key past the sequence.
			p[i] = x[i] == NEG_INF ? 0.0 : prob(x[i], m);
			sum += p[i];
			pm = max(pm, abs(p[i] * vsTile[LK * h + i]));
		}
		sum += subgroupShuffleXor(sum, 1u);
		l = l * alpha + sum;
		pm = max(pm, subgroupShuffleXor(pm, 1u)); // the row's largest |p'| in the tile
		if (elementWise) {
			[[unroll]] for (uint i = 0; i < LK / 4; i++)
				probs[r * SW + 4 * h + i] = vec4(p[4 * i], p[4 * i + 1], p[4 * i + 2], p[4 * i + 3]);
		} else {
			float inv = codeFactor(pm, pScale);
			[[unroll]] for (uint u = 0; u < LK / 16; u++) {
				float x[16];
				[[unroll]] for (uint e = 0; e < 16; e++)
					x[e] = p[16 * u + e] * vsTile[LK * h + 16 * u + e] * inv;
				uvec4 wa, wb;
				twoTermUnits(x, wa, wb);
				pCodes[r * PW + h * (LK / 16) + u] = wa;
				pCodes[(IR + r) * PW + h * (LK / 16) + u] = wb;
			}
		}
		setFactor(0u, r, h, alpha);
		setFactor(1u, r, h, pScale / TERM);
		sharedBarrier();

		// O *= alpha by rows, where some row's maximum moved.
		if (subgroupAny(alpha != 1.0)) {
			FACC fa;
			coopMatLoad(fa, factors, 0, 4, gl_CooperativeMatrixLayoutRowMajor);
			[[unroll]] for (uint db = 0; db < VB; db++) o[db] = o[db] * fa;
		}
		if (elementWise) {
			weighElements(k, k0, r, h);
		} else {
			// O += P V: per channel block hi = P_a V and lo = P_b V, times each row's sp / 254.
#ifdef KV_INT4
			loadStagedV();
#endif
			QMAT pa[2];
			coopMatLoad(pa[0], pCodes, 0, PW, gl_CooperativeMatrixLayoutRowMajor);
			coopMatLoad(pa[1], pCodes, IR * PW, PW, gl_CooperativeMatrixLayoutRowMajor);
			FACC fs;
			coopMatLoad(fs, factors, IR * 4, 4, gl_CooperativeMatrixLayoutRowMajor);
			[[unroll]] for (uint db = 0; db < VB; db++) {
				IACC hi = coopMatMulAdd(pa[0], vm[db], IACC(0));
				IACC lo = coopMatMulAdd(pa[1], vm[db], IACC(0));
				o[db] = o[db] + FACC(hi * IACC(254) + lo) * fs;
			}
		}
#ifdef KV_INT8
		if (more) loadV(k, next);
#endif
	}

	// Normalize and store, one 16 x 16 block at a time through shared memory.
	float inv = l == 0.0 ? 0.0 : 1.0 / l;
	bool writes = valid && rowWritesO(k, l);
	[[unroll]] for (uint db = 0; db < VB; db++) {
		sharedBarrier();
		coopMatStore(o[db], oBlock, 0, OW, gl_CooperativeMatrixLayoutRowMajor);
		sharedBarrier();
		if (writes) {
			[[unroll]] for (uint i = 0; i < 2; i++) {
				vec4 x = oBlock[r * OW + 2 * h + i] * inv;
				uint c = 16 * db + 8 * h + 4 * i;
				storeRow(k, r, c, x.x, x.y);
				storeRow(k, r, c + 2, x.z, x.w);
			}
		}
	}
	if (valid && h == 0u) storeRowLSE(k, r, m, l);
}
