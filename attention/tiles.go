package attention

import (
	"fmt"

	"github.com/vkattn/vkattn/devices"
)

// tiles are the work decomposition of a forward kernel, derived from the device's limits.
type tiles struct {
	BR, BC, WG, SG uint32 // query rows per workgroup, keys per tile, invocations, subgroup size
	PinSubgroup    bool   // require SG through subgroup size control
}

// sharedBytes is the shared memory the forward kernel declares for these tiles (flash_fwd.comp).
func (t tiles) sharedBytes(tier devices.Tier, d uint32) uint32 {
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
	}
	return tiles{}, fmt.Errorf("attention: head dim %d does not fit %d bytes of shared memory at tier %s", d, maxShared, tier)
}
