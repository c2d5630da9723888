package attention

import (
	"fmt"

	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/vk"
)

// tiles are the work decomposition of a forward kernel, derived from the device's limits.
type tiles struct {
	BR, BC, WG, SG uint32 // query rows per workgroup, keys per tile, invocations, subgroup size
	PinSubgroup    bool   // require SG through subgroup size control
}

// sharedBytes is the shared memory the forward kernel declares for these tiles (flash_fwd.comp).
func (t tiles) sharedBytes(tier devices.Tier, d uint32) uint32 {
	if tier == devices.TierCoopMat {
		// fp16 K and V tiles (rows padded by 8); per subgroup fp32 scores and fp16 probabilities in padded rows
		// (flash_fwd_coopmat.glsl: SS = BC + 4, PS = BC + 8); 16 bytes of flags.
		return 2*2*t.BC*(d+8) + (t.WG/t.SG)*coopTM*(4*(t.BC+4)+2*(t.BC+8)) + 16
	}
	floats := t.BC*(d+1) + t.BC*d // K (padded rows) and V tiles
	if tier == devices.TierSubgroup {
		floats += t.BR*d + t.BR*t.BC // Q and P tiles
	}
	return 4 * floats
}

// forwardTiles chooses tile sizes for head dim d that fit the profile's shared memory and
// workgroup limits.
func forwardTiles(tier devices.Tier, p *devices.Profile, d int) (tiles, error) {
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
		// Shrink keys per tile down to one subgroup's width, then rows per subgroup, then subgroups,
		// then keys below the width.
		for t.sharedBytes(tier, dd) > maxShared {
			switch {
			case t.BC > sg:
				t.BC -= sg
			case rows > 1:
				rows /= 2
				t.BR = nsg * rows
			case nsg > 1: // narrow subgroups: fewer of them
				nsg /= 2
				t.WG, t.BR = nsg*sg, nsg*rows
			case t.BC > 1:
				t.BC /= 2
			default:
				return tiles{}, fmt.Errorf("attention: head dim %d does not fit %d bytes of shared memory at tier %s", d, maxShared, tier)
			}
		}
		return t, nil
	case devices.TierCoopMat:
		return coopMatTiles(p, dd)
	}
	return tiles{}, fmt.Errorf("attention: head dim %d does not fit %d bytes of shared memory at tier %s", d, maxShared, tier)
}

// coopTM is the side of the cooperative-matrix kernel's blocks (flash_fwd_coopmat.glsl).
const coopTM = 16

// coopMatTiles sizes the cooperative-matrix kernel: subgroups of 16 query rows, K/V tiles of a
// multiple of 16 keys, at a subgroup width that is a multiple of 16 (pinned where it can vary).
func coopMatTiles(p *devices.Profile, d uint32) (tiles, error) {
	tier := devices.TierCoopMat
	if !p.HasCoopMatShape(vk.ComponentF16, coopTM, coopTM, coopTM) {
		return tiles{}, fmt.Errorf("attention: %s offers no 16x16x16 fp16 cooperative matrices for tier %s", p.Name, tier)
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
