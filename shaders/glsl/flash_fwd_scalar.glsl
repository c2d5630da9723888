// Scalar tier of flash_fwd.comp: invocation r owns query row r of the block, its q and o in
// registers (BR == WG).

void main() {
	uint b = gl_WorkGroupID.z, h = gl_WorkGroupID.y;
	Seq s = sequence(b);
	int row0 = int(gl_WorkGroupID.x * BR);
	if (row0 >= int(s.lq)) return; // uniform across the workgroup
	int lq = int(s.lq), lk = int(s.lk);
	int row = row0 + int(gl_LocalInvocationIndex);
	bool valid = row < lq;
	uint kvh = kvHead(h);

	float q[D], o[D];
	uint qt = s.qStart + uint(row);
	for (uint d = 0; d < D; d++) {
		q[d] = valid ? qAt(qt, h, d) * pc.scale : 0.0;
		o[d] = 0.0;
	}
	int lo = keyLo(row, lq, lk), hi = keyHi(row, lq, lk);
	// Keys any row of the block can see.
	int blockLo = keyLo(row0, lq, lk);
	int blockHi = keyHi(min(row0 + int(BR), lq) - 1, lq, lk);
	float m = NEG_INF, l = 0.0;
	for (int k0 = blockLo; k0 < blockHi; k0 += int(BC)) {
		barrier();
		loadTile(s, kvh, k0);
		barrier();
		float sc[BC];
		float mTile = NEG_INF;
		for (uint j = 0; j < BC; j++) {
			int key = k0 + int(j);
			float x = NEG_INF;
			if (valid && key >= lo && key < hi) {
				float acc = 0.0;
				for (uint d = 0; d < D; d++) acc += q[d] * kTile[j * KS + d];
				x = score(acc);
			}
			sc[j] = x;
			mTile = maxNaN(mTile, x);
		}
		float mNew = max(m, mTile);
		if (isnan(mTile)) mNew = mTile;
		if (mNew != NEG_INF) { // else nothing is visible to this row yet
			float alpha = rescale(m, mNew);
			l *= alpha;
			for (uint d = 0; d < D; d++) o[d] *= alpha;
			for (uint j = 0; j < BC; j++) {
				float p = exp(sc[j] - mNew);
				l += p;
				for (uint d = 0; d < D; d++) o[d] += weigh(p, vTile[j * D + d]);
			}
			m = mNew;
		}
	}
	if (!valid) return;
	float inv = l == 0.0 ? 0.0 : 1.0 / l;
	for (uint d = 0; d < D; d += 2) storeO(qt, h, d, o[d] * inv, o[d + 1] * inv);
	storeLSE(qt, h, m, l);
}
