// Scalar tier of flash_fwd.comp and decode.comp: invocation r owns row r of the block, its q and
// o in registers (BR == WG). Include attend_tile.glsl first. The including kernel maps the rows:
//   Block block()                          the workgroup's work; its field keys ([x, y)) bounds
//                                          the keys some row of the block sees
//   bool blockIdle(Block k)                no row to compute (uniform across the workgroup)
//   bool rowValid(Block k, uint r)         row r of the block exists
//   float rowQuery(Block k, uint r, uint d)  dim d of row r's query, unscaled
//   ivec2 rowKeys(Block k, uint r)         the keys a valid row r sees, [x, y)
//   bool rowWritesO(Block k, float l)      a row with softmax sum l stores its output
//   void storeRow(Block k, uint r, uint d, float a, float b)  dims d, d+1 of row r's output
//   void storeRowLSE(Block k, uint r, float m, float l)       row r's running max and sum

void main() {
	Block k = block();
	if (blockIdle(k)) return; // uniform across the workgroup
	uint r = gl_LocalInvocationIndex;
	bool valid = rowValid(k, r);

	float q[D], o[D];
	for (uint d = 0; d < D; d++) {
		q[d] = valid ? rowQuery(k, r, d) * pc.scale : 0.0;
		o[d] = 0.0;
	}
	ivec2 mine = valid ? rowKeys(k, r) : ivec2(0);
	float m = NEG_INF, l = 0.0;
	for (int k0 = k.keys.x; k0 < k.keys.y; k0 += int(BC)) {
		barrier();
		loadTile(k, k0);
		barrier();
		float sc[BC];
		float mTile = NEG_INF;
		for (uint j = 0; j < BC; j++) {
			int key = k0 + int(j);
			float x = NEG_INF;
			if (key >= mine.x && key < mine.y) {
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
	if (rowWritesO(k, l))
		for (uint d = 0; d < D; d += 2) storeRow(k, r, d, o[d] * inv, o[d + 1] * inv);
	storeRowLSE(k, r, m, l);
}
