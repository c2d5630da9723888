// The merge of partial attention results over disjoint key sets, a few output pairs of a row at
// a time: merge.comp's, and decode.comp's where the last workgroup of a block merges
// (MERGE_LAST). The includer declares the partials, partO and partLSE (fp32: O_s as [S][rows][D]
// from float poOff, lse_s as [S][rows] from float plOff), and includes tensors.glsl before. For a
// row of S partials:
//
//   lse = log sum_s exp(lse_s),   O = sum_s exp(lse_s - lse) O_s.
//
// A partial with lse_s = -inf (it saw no key) weighs nothing and its O_s is never used (a decode
// chunk that saw no key leaves it unwritten); a row whose partials are all -inf gives O = 0 and
// lse = -inf; a NaN lse_s makes its row NaN (so does +inf, as exp(inf - inf) does), and a NaN in
// a weighed O_s stays in its element.

// An invocation merges MERGE_PAIRS neighbouring dim pairs of a row (those below D; the includer
// may define it before including this file, default 1), reading the partials in batches of
// MERGE_BATCH (default 8): every load of a batch is issued before any is used, so that a row is
// meant to cost S / MERGE_BATCH memory round trips a pass rather than one a partial (how the
// driver schedules the loads decides). The sums run in partial order all the same, each element's
// as one multiplication and one addition (precise: never fused), so that every MERGE_PAIRS and
// MERGE_BATCH gives the same bits. A batch reads the outputs of partials that saw no key too, but
// never uses them.
#ifndef MERGE_PAIRS
#define MERGE_PAIRS 1u
#endif
#ifndef MERGE_BATCH
#define MERGE_BATCH 8u
#endif

// Merged is MERGE_PAIRS output pairs of a merged row before they are divided by l: acc, the
// partial outputs weighed by exp(lse_s - m); m, the largest lse_s; l, the sum of the weights.
struct Merged {
	vec2 acc[MERGE_PAIRS];
	float m, l;
};

// mergePairs merges pairs p0 to p0 + MERGE_PAIRS - 1 (dims 2 p0 on) of row row (of rows) over
// nPart partials.
Merged mergePairs(uint nPart, uint rows, uint row, uint p0, uint poOff, uint plOff) {
	float m = NEG_INF;
	for (uint s0 = 0u; s0 < nPart; s0 += MERGE_BATCH) {
		float x[MERGE_BATCH];
		[[unroll]] for (uint j = 0u; j < MERGE_BATCH; j++)
			x[j] = s0 + j < nPart ? partLSE[plOff + (s0 + j) * rows + row] : NEG_INF;
		[[unroll]] for (uint j = 0u; j < MERGE_BATCH; j++) m = maxNaN(m, x[j]);
	}
	precise float l = 0.0;
	precise vec2 acc[MERGE_PAIRS];
	[[unroll]] for (uint i = 0u; i < MERGE_PAIRS; i++) acc[i] = vec2(0.0);
	if (m != NEG_INF) {
		for (uint s0 = 0u; s0 < nPart; s0 += MERGE_BATCH) {
			float x[MERGE_BATCH];
			vec2 po[MERGE_BATCH][MERGE_PAIRS];
			[[unroll]] for (uint j = 0u; j < MERGE_BATCH; j++) {
				bool has = s0 + j < nPart;
				uint s = has ? s0 + j : 0u;
				x[j] = has ? partLSE[plOff + s * rows + row] : NEG_INF;
				uint e = poOff + (s * rows + row) * D + 2u * p0;
				[[unroll]] for (uint i = 0u; i < MERGE_PAIRS; i++)
					po[j][i] = p0 + i < D / 2u ? vec2(partO[e + 2u * i], partO[e + 2u * i + 1u]) : vec2(0.0);
			}
			[[unroll]] for (uint j = 0u; j < MERGE_BATCH; j++) {
				if (x[j] == NEG_INF) continue; // no key: nothing to weigh, nothing written
				float w = exp(x[j] - m);
				l += w;
				[[unroll]] for (uint i = 0u; i < MERGE_PAIRS; i++) acc[i] += weigh(w, po[j][i]);
			}
		}
	}
	Merged g;
	g.acc = acc;
	g.m = m;
	g.l = l;
	return g;
}

// storeMerged writes merged pairs p0 on (those below D) to token t, head h of o (binding 3),
// and with p0 = 0 the row's logsumexp to lse (binding 4) if asked for.
void storeMerged(uint t, uint h, uint p0, Merged g) {
	float inv = g.l == 0.0 ? 0.0 : 1.0 / g.l;
	[[unroll]] for (uint i = 0u; i < MERGE_PAIRS; i++)
		if (p0 + i < D / 2u) storeO(t, h, 2u * (p0 + i), g.acc[i].x * inv, g.acc[i].y * inv);
	if (p0 == 0u) storeLSE(t, h, g.m, g.l);
}
