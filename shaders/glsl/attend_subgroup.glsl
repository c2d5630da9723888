// Subgroup tier of flash_fwd.comp. The workgroup is WG / SG subgroups; subgroup g
// owns rows [g*ROWS, (g+1)*ROWS) of the block. For Q.K^T lane x scores keys x, x+SG, ... of the
// tile against the row's q, broadcast from shared memory; the row max and sum are subgroup
// reductions. For P.V lane x owns the dim pairs x, x+SG, ... of the output, so 16-bit pairs are
// stored by one lane. Include attend_tile.glsl first; the including kernel maps the rows with the
// functions attend_scalar.glsl lists. At a wrong subgroup width the row's max, sum and output are
// NaN.

const uint NSG = WG / SG;
const uint ROWS = BR / NSG;
const uint KPL = (BC + SG - 1) / SG;       // keys per lane
const uint PAIRS = D / 2;
const uint PPL = (PAIRS + SG - 1) / SG;    // dim pairs per lane

shared float qTile[BR * D];
shared float pTile[BR * BC];

void main() {
	Block k = block();
	if (blockIdle(k)) return; // uniform across the workgroup
	uint lane = gl_SubgroupInvocationID, sg = gl_SubgroupID;
	// Tile sizes assume SG lanes; a driver that runs another width gets NaN, never a wrong answer.
	bool widthOK = gl_SubgroupSize == SG;

	for (uint idx = gl_LocalInvocationIndex; idx < BR * D; idx += WG) {
		uint r = idx / D;
		float x = 0.0;
		if (rowValid(k, r)) x = rowQuery(k, r, idx % D) * pc.scale;
		qTile[idx] = x;
	}

	float m[ROWS], l[ROWS];
	vec2 o[ROWS][PPL];
	for (uint rr = 0; rr < ROWS; rr++) {
		m[rr] = NEG_INF;
		l[rr] = 0.0;
		for (uint i = 0; i < PPL; i++) o[rr][i] = vec2(0.0);
	}
	for (int k0 = k.keys.x; k0 < k.keys.y; k0 += int(BC)) {
		barrier();
		loadTile(k, k0);
		barrier();
		for (uint rr = 0; rr < ROWS; rr++) {
			uint r = sg * ROWS + rr; // row within the block
			if (r >= BR) break;      // only at a wrong subgroup width (widthOK): stay in bounds
			ivec2 mine = rowValid(k, r) ? rowKeys(k, r) : ivec2(0);
			float x[KPL];
			float mx = NEG_INF;
			bool nan = false;
			for (uint kk = 0; kk < KPL; kk++) {
				uint j = kk * SG + lane;
				int key = k0 + int(j);
				float v = NEG_INF;
				if (j < BC && key >= mine.x && key < mine.y) {
					float acc = 0.0;
					for (uint d = 0; d < D; d++) acc += qTile[r * D + d] * kTile[j * KS + d];
					v = score(acc);
				}
				x[kk] = v;
				nan = nan || isnan(v);
				mx = max(mx, v);
			}
			float alpha = raiseMax(m[rr], subgroupMax(mx), subgroupAny(nan)), sum = 0.0;
			for (uint kk = 0; kk < KPL; kk++) {
				uint j = kk * SG + lane;
				float p = prob(x[kk], m[rr]);
				sum += p;
				if (j < BC) pTile[r * BC + j] = p;
			}
			l[rr] = l[rr] * alpha + subgroupAdd(sum);
			for (uint i = 0; i < PPL; i++) o[rr][i] *= alpha;
		}
		subgroupMemoryBarrierShared();
		subgroupBarrier();
		for (uint j = 0; j < BC; j++) {
			vec2 v[PPL];
			for (uint i = 0; i < PPL; i++) {
				uint pair = lane + i * SG;
				v[i] = pair < PAIRS ? vec2(vTile[j * D + 2 * pair], vTile[j * D + 2 * pair + 1]) : vec2(0.0);
			}
			for (uint rr = 0; rr < ROWS; rr++) {
				float p = sg * ROWS + rr < BR ? pTile[(sg * ROWS + rr) * BC + j] : 0.0;
				for (uint i = 0; i < PPL; i++) o[rr][i] += weigh(p, v[i]);
			}
		}
	}
	for (uint rr = 0; rr < ROWS; rr++) {
		uint r = sg * ROWS + rr;
		if (r >= BR || !rowValid(k, r)) continue;
		float mm = m[rr], ll = l[rr];
		float inv = ll == 0.0 ? 0.0 : 1.0 / ll;
		if (!widthOK) mm = ll = inv = uintBitsToFloat(0x7fc00000u);
		if (rowWritesO(k, ll)) {
			for (uint i = 0; i < PPL; i++) {
				uint pair = lane + i * SG;
				if (pair < PAIRS) storeRow(k, r, 2 * pair, o[rr][i].x * inv, o[rr][i].y * inv);
			}
		}
		if (lane == 0) storeRowLSE(k, r, mm, ll);
	}
}
