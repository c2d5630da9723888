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
	ivec2 keys = blockKeys(row0, int(BR), lq, lk);
	float m = NEG_INF, l = 0.0;
	for (int k0 = keys.x; k0 < keys.y; k0 += int(BC)) {
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
		float alpha = raiseMax(m, mTile, isnan(mTile));
		l *= alpha;
		for (uint d = 0; d < D; d++) o[d] *= alpha;
		for (uint j = 0; j < BC; j++) {
			float p = prob(sc[j], m);
			l += p;
			for (uint d = 0; d < D; d++) o[d] += weigh(p, vTile[j * D + d]);
		}
	}
	if (!valid) return;
	float inv = l == 0.0 ? 0.0 : 1.0 / l;
	for (uint d = 0; d < D; d += 2) storeO(qt, h, d, o[d] * inv, o[d + 1] * inv);
	storeLSE(qt, h, m, l);
}
