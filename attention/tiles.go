package attention

import (
	"fmt"
	"os"

	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/vk"
)

// tiles are the work decomposition of a forward kernel, derived from the device's limits.
type tiles struct {
	BR, BC, WG, SG uint32 // query rows per workgroup, keys per tile, invocations, subgroup size
	RW             uint32 // coopmat2: columns of the row-statistics matrices (the narrowest the device allows)
	PinSubgroup    bool   // require SG through subgroup size control
}

// sharedBytes is the shared memory the forward kernel declares for these tiles (flash_fwd.comp).
func (t tiles) sharedBytes(tier devices.Tier, d uint32) uint32 {
	if tier == devices.TierCoopMat2 {
		return 4 * 3 // flash_fwd_coopmat2.glsl: three tile flag words; the matrices live where the driver puts them
	}
	if tier == devices.TierCoopMat {
		// 16-bit K and V tiles (rows padded by 8); per subgroup fp32 scores and 16-bit probabilities in padded rows
		// (attend_coopmat.glsl: SS = BC + 4, PS = BC + 8); 16 bytes of flags.
		return 2*2*t.BC*(d+8) + t.coopMatScoreBytes() + 16
	}
	floats := t.BC*(d+1) + t.BC*d // K (padded rows) and V tiles
	if tier == devices.TierSubgroup {
		floats += t.BR*d + t.BR*t.BC // Q and P tiles
	}
	return 4 * floats
}

// coopMatScoreBytes is the shared memory of the coopmat kernel's per-subgroup scores and
// probabilities (attend_coopmat.glsl's sTile and pTile, one scale group's worth).
func (t tiles) coopMatScoreBytes() uint32 {
	return (t.WG / t.SG) * coopTM * (4*(t.BC+4) + 2*(t.BC+8))
}

// forwardTiles chooses tile sizes for head dim d and inputs of type dt that fit the profile's
// shared memory and workgroup limits (and, at the matrix tiers, the matrix shapes it offers for
// dt).
func forwardTiles(tier devices.Tier, p *devices.Profile, d int, dt memory.DType) (tiles, error) {
	dd := uint32(d)
	maxShared, maxWG := p.MaxSharedMemory, min(p.MaxWorkgroupInvocations, p.MaxWorkgroupSize[0])
	switch tier {
	case devices.TierScalar:
		t := tiles{BR: min(64, maxWG), BC: 32, SG: 1}
		t.WG = t.BR
		for t.BC > 1 && t.sharedBytes(tier, dd) > maxShared {
			t.BC /= 2
		}
		if t.sharedBytes(tier, dd) > maxShared {
			break
		}
		return t, nil
	case devices.TierSubgroup:
		sg := p.SubgroupSize
		nsg := max(1, min(128/sg, maxWG/sg))
		rows := uint32(4)
		t := tiles{SG: sg, WG: nsg * sg, BC: max(sg, 32) / sg * sg, PinSubgroup: p.MinSubgroupSize != p.MaxSubgroupSize}
		t.BR = nsg * rows
		return shrinkSubgroupTiles(t, nsg, rows, maxShared, d, tier, func(t tiles) uint32 { return t.sharedBytes(tier, dd) })
	case devices.TierCoopMat:
		return coopMatTiles(p, dd, dt)
	case devices.TierCoopMat2:
		return coopMat2Tiles(p, dd, dt)
	}
	return tiles{}, fmt.Errorf("attention: head dim %d does not fit %d bytes of shared memory at tier %s", d, maxShared, tier)
}

// shrinkSubgroupTiles shrinks subgroup-tier tiles t of nsg subgroups of per rows each until
// bytes(t), the shared memory they declare, fits maxShared: keys per tile down to one subgroup's
// width, then rows per subgroup, then subgroups (narrow subgroups: fewer of them), then keys below
// the width.
func shrinkSubgroupTiles(t tiles, nsg, per, maxShared uint32, d int, tier devices.Tier, bytes func(tiles) uint32) (tiles, error) {
	sg := t.SG
	for bytes(t) > maxShared {
		switch {
		case t.BC > sg:
			t.BC -= sg
		case per > 1:
			per /= 2
			t.BR = nsg * per
		case nsg > 1:
			nsg /= 2
			t.WG, t.BR = nsg*sg, nsg*per
		case t.BC > 1:
			t.BC /= 2
		default:
			return tiles{}, fmt.Errorf("attention: head dim %d does not fit %d bytes of shared memory at tier %s", d, maxShared, tier)
		}
	}
	return t, nil
}

// coopTM is the side of the cooperative-matrix kernel's blocks (attend_coopmat.glsl).
const coopTM = 16

// matrixElement is the cooperative-matrix component type the matrix tiers' kernel for inputs of
// type dt multiplies in: the input type itself (fp16 or bf16).
func matrixElement(dt memory.DType) (vk.ComponentType, error) {
	switch dt {
	case memory.F16:
		return vk.ComponentF16, nil
	case memory.BF16:
		return vk.ComponentBF16, nil
	}
	return 0, fmt.Errorf("attention: the matrix tiers take fp16 or bf16 inputs, not %s", dt)
}

// coopMatTiles sizes the cooperative-matrix kernel: subgroups of 16 query rows, K/V tiles of a
// multiple of 16 keys, at a subgroup width that is a multiple of 16 (pinned where it can vary).
func coopMatTiles(p *devices.Profile, d uint32, dt memory.DType) (tiles, error) {
	tier := devices.TierCoopMat
	elem, err := matrixElement(dt)
	if err != nil {
		return tiles{}, err
	}
	if !p.HasCoopMatShape(elem, coopTM, coopTM, coopTM) {
		return tiles{}, fmt.Errorf("attention: %s offers no 16x16x16 %s cooperative matrices for tier %s", p.Name, dt, tier)
	}
	if d%coopTM != 0 {
		return tiles{}, fmt.Errorf("attention: head dim %d is not a multiple of %d at tier %s", d, coopTM, tier)
	}
	sg := p.SubgroupSize
	if sg < coopTM || sg%coopTM != 0 {
		if !p.Features.SubgroupSizeControl || p.MaxSubgroupSize < coopTM {
			return tiles{}, fmt.Errorf("attention: tier %s needs subgroups of 16 or more lanes; %s has %d", tier, p.Name, sg)
		}
		sg = max(coopTM, p.MinSubgroupSize)
	}
	maxWG := min(p.MaxWorkgroupInvocations, p.MaxWorkgroupSize[0])
	nsg := max(1, min(4, maxWG/sg))
	t := tiles{SG: sg, WG: nsg * sg, BR: coopTM * nsg, BC: 64, PinSubgroup: p.MinSubgroupSize != p.MaxSubgroupSize}
	for t.sharedBytes(tier, d) > p.MaxSharedMemory {
		switch {
		case t.BC > coopTM:
			t.BC -= coopTM
		case nsg > 1:
			nsg--
			t.WG, t.BR = nsg*sg, coopTM*nsg
		default:
			return tiles{}, fmt.Errorf("attention: head dim %d does not fit %d bytes of shared memory at tier %s", d, p.MaxSharedMemory, tier)
		}
	}
	return t, nil
}

// TilesEnv overrides the coopmat2 tier's tiles for tuning on a new device: "BR,BC,WG" (query rows
// per workgroup, keys per tile, invocations). Tiles the device cannot run are an error.
const TilesEnv = "VKATTN_COOPMAT2_TILES"

// coopMat2Tiles sizes the coopmat2 kernel: a BR x BC score block and a BR x D output in
// workgroup-scope matrices of WG invocations, every side a multiple of the granularity the device
// reports for matrices of the input type at that workgroup size. It takes the first candidate the device runs:
// 256 invocations (fewer matrix elements, so fewer registers, per invocation), then 128, with
// 64 x 64 blocks, or 32 x 32 past head dim 128, as the output block lives in registers.
// $VKATTN_COOPMAT2_TILES replaces the candidates.
func coopMat2Tiles(p *devices.Profile, d uint32, dt memory.DType) (tiles, error) {
	br, bc := uint32(64), uint32(64)
	if d > 128 {
		br, bc = 32, 32
	}
	cands := []tiles{{BR: br, BC: bc, WG: 256}, {BR: br, BC: bc, WG: 128}}
	if env := os.Getenv(TilesEnv); env != "" {
		var t tiles
		if _, err := fmt.Sscanf(env, "%d,%d,%d", &t.BR, &t.BC, &t.WG); err != nil {
			return tiles{}, fmt.Errorf("attention: %s=%q: want BR,BC,WG: %v", TilesEnv, env, err)
		}
		cands = []tiles{t}
	}
	var first error
	for _, t := range cands {
		t, err := fitCoopMat2(p, d, dt, t)
		if err == nil {
			return t, nil
		}
		if first == nil {
			first = err
		}
	}
	return tiles{}, first
}

// fitCoopMat2 checks coopmat2 tiles for inputs of type dt against the device and completes them.
func fitCoopMat2(p *devices.Profile, d uint32, dt memory.DType, t tiles) (tiles, error) {
	tier := devices.TierCoopMat2
	t.SG, t.PinSubgroup = p.SubgroupSize, p.MinSubgroupSize != p.MaxSubgroupSize
	elem, err := matrixElement(dt)
	if err != nil {
		return tiles{}, err
	}
	g := p.CoopMatFlexibleFor(elem, t.WG)
	switch {
	case g == nil:
		return tiles{}, fmt.Errorf("attention: %s offers no %s workgroup-scope matrices for %d invocations (tier %s)", p.Name, dt, t.WG, tier)
	case t.WG > p.CoopMat2.MaxWorkgroupSize || t.WG > min(p.MaxWorkgroupInvocations, p.MaxWorkgroupSize[0]) || t.SG == 0 || t.WG%t.SG != 0:
		return tiles{}, fmt.Errorf("attention: workgroups of %d invocations do not fit %s (tier %s)", t.WG, p.Name, tier)
	case t.BR%g.M != 0 || t.BC%g.N != 0 || t.BC%g.K != 0 || d%g.N != 0 || d%g.K != 0:
		return tiles{}, fmt.Errorf("attention: blocks of %d rows, %d keys and head dim %d are not multiples of %s's %dx%dx%d granularity at %d invocations (tier %s)",
			t.BR, t.BC, d, p.Name, g.M, g.N, g.K, t.WG, tier)
	case max(t.BR, t.BC, d) > p.CoopMat2.MaxDimension:
		return tiles{}, fmt.Errorf("attention: head dim %d or blocks of %dx%d exceed %s's largest matrix side %d (tier %s)", d, t.BR, t.BC, p.Name, p.CoopMat2.MaxDimension, tier)
	case t.sharedBytes(tier, d)+p.CoopMat2.ReservedSharedMemory > p.MaxSharedMemory:
		return tiles{}, fmt.Errorf("attention: %s leaves no shared memory for tier %s", p.Name, tier)
	}
	t.RW = g.N
	return t, nil
}
