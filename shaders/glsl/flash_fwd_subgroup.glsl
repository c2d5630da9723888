// Subgroup tier of flash_fwd.comp. The workgroup is WG / SG subgroups; subgroup g owns query rows
// [g*ROWS, (g+1)*ROWS) of the block. For Q.K^T lane x scores keys x, x+SG, ... of the tile against
// the row's q, broadcast from shared memory; the row max and sum are subgroup reductions. For P.V
// lane x owns the dim pairs x, x+SG, ... of the output, so 16-bit pairs are stored by one lane.

const uint NSG = WG / SG;
const uint ROWS = BR / NSG;
const uint KPL = (BC + SG - 1) / SG;       // keys per lane
const uint PAIRS = D / 2;
const uint PPL = (PAIRS + SG - 1) / SG;    // dim pairs per lane

shared float qTile[BR * D];
shared float pTile[BR * BC];

void main() {
	uint b = gl_WorkGroupID.z, h = gl_WorkGroupID.y;
	Seq s = sequence(b);
	int row0 = int(gl_WorkGroupID.x * BR);
	if (row0 >= int(s.lq)) return; // uniform across the workgroup
	int lq = int(s.lq), lk = int(s.lk);
	uint kvh = kvHead(h);
	uint lane = gl_SubgroupInvocationID, sg = gl_SubgroupID;
	// Tile sizes assume SG lanes; a driver that runs another width gets NaN, never a wrong answer.
	bool widthOK = gl_SubgroupSize == SG;

	for (uint idx = gl_LocalInvocationIndex; idx < BR * D; idx += WG) {
		int row = row0 + int(idx / D);
		float x = 0.0;
		if (row < lq) x = qAt(s.qStart + uint(row), h, idx % D) * pc.scale;
		qTile[idx] = x;
	}

	float m[ROWS], l[ROWS];
	vec2 o[ROWS][PPL];
	for (uint r = 0; r < ROWS; r++) {
		m[r] = NEG_INF;
		l[r] = 0.0;
		for (uint i = 0; i < PPL; i++) o[r][i] = vec2(0.0);
	}
	ivec2 keys = blockKeys(row0, int(BR), lq, lk);
	for (int k0 = keys.x; k0 < keys.y; k0 += int(BC)) {
		barrier();
		loadTile(s, kvh, k0);
		barrier();
		for (uint r = 0; r < ROWS; r++) {
			uint rl = sg * ROWS + r; // row within the block
			if (rl >= BR) break;     // only at a wrong subgroup width (widthOK): stay in bounds
			int row = row0 + int(rl);
			int lo = keyLo(row, lq, lk), hi = row < lq ? keyHi(row, lq, lk) : lo;
			float x[KPL];
			float mx = NEG_INF;
			bool nan = false;
			for (uint kk = 0; kk < KPL; kk++) {
				uint j = kk * SG + lane;
				int key = k0 + int(j);
				float v = NEG_INF;
				if (j < BC && key >= lo && key < hi) {
					float acc = 0.0;
					for (uint d = 0; d < D; d++) acc += qTile[rl * D + d] * kTile[j * KS + d];
					v = score(acc);
				}
				x[kk] = v;
				nan = nan || isnan(v);
				mx = max(mx, v);
			}
			float alpha = raiseMax(m[r], subgroupMax(mx), subgroupAny(nan)), sum = 0.0;
			for (uint kk = 0; kk < KPL; kk++) {
				uint j = kk * SG + lane;
				float p = prob(x[kk], m[r]);
				sum += p;
				if (j < BC) pTile[rl * BC + j] = p;
			}
			l[r] = l[r] * alpha + subgroupAdd(sum);
			for (uint i = 0; i < PPL; i++) o[r][i] *= alpha;
		}
		subgroupMemoryBarrierShared();
		subgroupBarrier();
		for (uint j = 0; j < BC; j++) {
			vec2 v[PPL];
			for (uint i = 0; i < PPL; i++) {
				uint pair = lane + i * SG;
				v[i] = pair < PAIRS ? vec2(vTile[j * D + 2 * pair], vTile[j * D + 2 * pair + 1]) : vec2(0.0);
			}
			for (uint r = 0; r < ROWS; r++) {
				float p = sg * ROWS + r < BR ? pTile[(sg * ROWS + r) * BC + j] : 0.0;
				for (uint i = 0; i < PPL; i++) o[r][i] += weigh(p, v[i]);
			}
		}
	}
	for (uint r = 0; r < ROWS; r++) {
		int row = row0 + int(sg * ROWS + r);
		if (row >= lq || sg * ROWS + r >= BR) continue;
		uint qt = s.qStart + uint(row);
		float inv = l[r] == 0.0 ? 0.0 : 1.0 / l[r];
		if (!widthOK) inv = uintBitsToFloat(0x7fc00000u);
		for (uint i = 0; i < PPL; i++) {
			uint pair = lane + i * SG;
			if (pair < PAIRS) storeO(qt, h, 2 * pair, o[r][i].x * inv, o[r][i].y * inv);
		}
		if (lane == 0) storeLSE(qt, h, widthOK ? m[r] : inv, l[r]);
	}
}
