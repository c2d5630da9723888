package attention

import (
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/shaders"
)

// ForwardTiers lists the tiers, slowest first, at which Forward can run on the engine's device:
// each can be forced with Options.Tier. A tier is listed when the device supports it and has
// every feature a forward variant of the tier requires.
func (e *Engine) ForwardTiers() []devices.Tier {
	return forwardTiers(&e.profile)
}

func forwardTiers(p *devices.Profile) []devices.Tier {
	var out []devices.Tier
	for _, t := range devices.Tiers {
		if !p.Supports(t) {
			continue
		}
		if _, err := shaders.ForTierOn(shaders.OpForward, t, p); err == nil {
			out = append(out, t)
		}
	}
	return out
}

// ForwardInputs lists the storage types the forward kernel of a tier takes; the automatic choice
// runs other types at a slower tier.
func ForwardInputs(t devices.Tier) []memory.DType {
	v, err := shaders.ForTier(shaders.OpForward, t)
	if err != nil {
		return nil
	}
	var out []memory.DType
	for _, dt := range []memory.DType{memory.F32, memory.F16, memory.BF16} {
		if v.Reads(dt) {
			out = append(out, dt)
		}
	}
	return out
}
